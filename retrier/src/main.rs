//! `hookstream-retrier`: wiring only; the service lives in the library.

fn main() -> std::process::ExitCode {
    hookstream_core::service::main("hookstream-retrier", hookstream_retrier::run)
}
