//! `hookstream-api`: wiring only; the service lives in the library.

/// mimalloc returns what a burst freed to the system; glibc's malloc keeps it in its arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hookstream_core::service::main("hookstream-api", hookstream_api::run)
}
