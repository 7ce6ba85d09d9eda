//! SIGKILL while tasks wait for their due time.
