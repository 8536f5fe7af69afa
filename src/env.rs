//! `env_var()`: environment variables as dbt's templates read them, for profiles.yml, the
//! project file and models alike. It sits below `config` and `render`, which both call it.

use minijinja::value::Value;
use minijinja::{Error, ErrorKind};

/// The prefix of dbt's secret environment variables: readable only where connections are
/// configured (profiles.yml, packages.yml), never in a model.
pub const SECRET_PREFIX: &str = "DBT_ENV_SECRET";

/// `env_var('NAME')` / `env_var('NAME', default)` outside a model (profiles, the project file);
/// inside a model `render` first looks at a unit test's overrides.
pub fn env_var(name: String, default: Option<Value>) -> Result<Value, Error> {
    match std::env::var(&name) {
        Ok(v) => Ok(Value::from(v)),
        Err(_) => default.map(|d| Value::from(d.to_string())).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("environment variable `{name}` is not set and env_var() has no default"),
            )
        }),
    }
}
