//! The process environment as a configuration source: `SLUICE_<NAME>` for every setting (the
//! names are in `settings`), `SLUICE_CONFIG` for the file, and `RUST_LOG`, which wins over
//! the log level. Resolution takes the environment as a function, so tests pass their own.

/// Environment variable naming the config file when `--config` is absent.
pub(super) const CONFIG_ENV: &str = "SLUICE_CONFIG";
/// The standard tracing filter variable; it wins over `--log-level`.
pub(super) const RUST_LOG_ENV: &str = "RUST_LOG";

/// Reads the real process environment; `sluice start` passes it to [`super::resolve`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}
