//! SSRF guard: webhook targets that resolve to private, loopback, link-local, multicast or
//! otherwise internal addresses are refused unless `delivery.allow_private_targets` is set.
//!
//! The check runs in the HTTP client's DNS resolver, on the addresses actually connected to,
//! so a name that resolves differently between check and use (DNS rebinding) cannot slip by.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether an address is reachable only inside a network (or is not a unicast host at all):
/// in [`V4_RANGES`] or [`V6_RANGES`]. IPv6 forms that carry an IPv4 address ([`V6_CARRIERS`]:
/// mapped, translated, NAT64, 6to4) are judged by the IPv4 address they carry.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

/// IPv4 ranges refused as targets: every entry of IANA's IPv4 Special-Purpose Address
/// Registry that is not globally reachable (the whole of 192.0.0.0/24, though two anycast
/// addresses in it are: no webhook lives there), plus multicast.
pub const V4_RANGES: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this network"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private use"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared address space (carrier-grade NAT)"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private use"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation (TEST-NET-1)"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "deprecated 6to4 relay anycast"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private use"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation (TEST-NET-2)"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation (TEST-NET-3)"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved (and limited broadcast)"),
];

/// IPv6 ranges refused as targets: IANA's IPv6 Special-Purpose Address Registry entries that
/// are not globally reachable or not routable as hosts (ORCHID identifiers), Teredo (it hides
/// the IPv4 address it reaches), the deprecated IPv4-compatible and site-local forms, and
/// multicast. Within 2001::/23 the anycast and AS112 entries are globally reachable, but no
/// webhook lives there either.
pub const V6_RANGES: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, "unspecified, loopback, IPv4-compatible"),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "local-use IPv4/IPv6 translation"),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "discard-only"),
    (Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0), 64, "dummy prefix"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, "IETF protocol assignments, Teredo"),
    (Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0), 48, "benchmarking"),
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28, "deprecated ORCHID"),
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28, "ORCHIDv2"),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "documentation"),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "documentation"),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, "segment routing (SRv6) SIDs"),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "unique local"),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local unicast"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "deprecated site-local"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

/// IPv6 ranges whose addresses carry an IPv4 address, and the segment at which its two
/// segments start: judged by that address.
pub const V6_CARRIERS: &[(Ipv6Addr, u8, usize, &str)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96, 6, "IPv4-mapped"),
    (Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96, 6, "IPv4-translated"),
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, 6, "NAT64 well-known prefix"),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, 1, "6to4"),
];

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    V4_RANGES.iter().any(|&(net, prefix, _)| in_v4(ip, net, prefix))
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(&(_, _, at, _)) =
        V6_CARRIERS.iter().find(|&&(net, prefix, _, _)| in_v6(ip, net, prefix))
    {
        let (hi, lo) = (s[at], s[at + 1]);
        return is_internal_v4(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8));
    }
    V6_RANGES.iter().any(|&(net, prefix, _)| in_v6(ip, net, prefix))
}

/// How every refusal's message starts; the DLQ files entries whose error starts so as
/// `refused`.
pub const REFUSED: &str = "refused: internal address";

/// Why a target was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused: internal address: target {0} is loopback, private or otherwise internal (delivery.allow_private_targets is off)"
)]
pub struct InternalTarget(pub String);

/// A resolver that drops internal addresses and fails when none is left.
#[derive(Debug, Clone, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                addrs.into_iter().filter(|a| !is_internal(a.ip())).collect();
            if public.is_empty() {
                return Err(
                    Box::new(InternalTarget(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// A resolver handle for `reqwest::ClientBuilder::dns_resolver`.
pub fn resolver() -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver)
}

/// Checks a URL whose host is an IP literal (the resolver never sees those).
pub fn check_literal(url: &url::Url) -> Result<(), InternalTarget> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_internal(ip) {
        return Err(InternalTarget(ip.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first and the last address of every range in the tables.
    fn edges_v4(net: Ipv4Addr, prefix: u8) -> [Ipv4Addr; 2] {
        let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        [Ipv4Addr::from(u32::from(net)), Ipv4Addr::from(u32::from(net) | host)]
    }

    fn edges_v6(net: Ipv6Addr, prefix: u8) -> [Ipv6Addr; 2] {
        let host = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        [Ipv6Addr::from(u128::from(net)), Ipv6Addr::from(u128::from(net) | host)]
    }

    /// An address of a carrier range carrying `v4`.
    fn carrying(net: Ipv6Addr, at: usize, v4: Ipv4Addr) -> Ipv6Addr {
        let mut s = net.segments();
        let o = v4.octets();
        s[at] = u16::from_be_bytes([o[0], o[1]]);
        s[at + 1] = u16::from_be_bytes([o[2], o[3]]);
        Ipv6Addr::from(s)
    }

    #[test]
    fn every_table_entry_is_refused_at_both_ends_at_creation_and_at_delivery() {
        let refused = |ip: IpAddr, what: &str| {
            assert!(is_internal(ip), "{ip} ({what}) must be internal");
            // Creation and delivery both check an IP literal with `check_literal`.
            let url: url::Url = match ip {
                IpAddr::V4(v4) => format!("https://{v4}/hook"),
                IpAddr::V6(v6) => format!("https://[{v6}]/hook"),
            }
            .parse()
            .expect("url");
            assert!(check_literal(&url).is_err(), "{url} ({what}) must be refused");
        };
        for &(net, prefix, what) in V4_RANGES {
            for ip in edges_v4(net, prefix) {
                refused(IpAddr::V4(ip), what);
            }
        }
        for &(net, prefix, what) in V6_RANGES {
            for ip in edges_v6(net, prefix) {
                refused(IpAddr::V6(ip), what);
            }
        }
        for &(net, _, at, what) in V6_CARRIERS {
            for v4 in ["127.0.0.1", "169.254.169.254", "10.0.0.1"] {
                refused(IpAddr::V6(carrying(net, at, v4.parse().expect(v4))), what);
            }
            let public = carrying(net, at, Ipv4Addr::new(8, 8, 8, 8));
            assert!(!is_internal(IpAddr::V6(public)), "{public} ({what}) carries a public one");
        }
    }

    #[test]
    fn the_forms_found_by_reviews_are_refused() {
        for ip in [
            "::127.0.0.1",
            "::7f00:1",
            "::ffff:127.0.0.1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "fec0::1",
            "192.0.0.1",
            "192.0.0.170",
            "192.88.99.1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "100::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "3fff::1",
            "5f00::1",
        ] {
            assert!(is_internal(ip.parse().expect(ip)), "{ip} must be internal");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "192.1.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:81c::200e",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(ip.parse().expect(ip)), "{ip} is public");
        }
        assert!(check_literal(&"https://8.8.8.8/x".parse().expect("url")).is_ok());
        assert!(check_literal(&"https://example.com/x".parse().expect("url")).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_internal_hosts() {
        let name: Name = "localhost".parse().expect("name");
        let result = GuardedResolver.resolve(name).await;
        assert!(result.is_err());
    }
}
