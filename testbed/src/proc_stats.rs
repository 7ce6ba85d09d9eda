//! Memory figures of a child process, from `/proc` (Linux).

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident set size of `pid` now, in KiB (0 when unknown).
pub(crate) fn rss_kb(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

/// Peak resident set size of `pid`, in KiB (0 when unknown).
pub(crate) fn hwm_kb(pid: u32) -> u64 {
    status_field(pid, "VmHWM:")
}
