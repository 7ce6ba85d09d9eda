//! `hookstream-dispatcher`: wiring only; the service lives in the library.

fn main() -> std::process::ExitCode {
    hookstream_core::service::main("hookstream-dispatcher", hookstream_dispatcher::run)
}
