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

/// The values of the `DBT_ENV_SECRET_*` variables set for this process (longest first, empty
/// ones left out): what `mask` hides.
pub fn secrets() -> &'static [String] {
    static SECRETS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SECRETS.get_or_init(|| {
        // `vars_os`: a variable that is not UTF-8 must not stop the program.
        let mut values: Vec<String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, v)| k.starts_with(SECRET_PREFIX) && !v.is_empty())
            .map(|(_, v)| v)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        values
    })
}

/// The mask dbt shows for a secret.
pub const MASK: &str = "*****";

/// `text` with every secret value replaced by `*****`: for what xform prints and writes
/// (diagnostics, progress lines, artifacts), so that a secret a profile reads never leaves it.
pub fn mask(text: &str) -> std::borrow::Cow<'_, str> {
    let secrets = secrets();
    if secrets.is_empty() || !secrets.iter().any(|s| text.contains(s.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s.as_str(), MASK);
    }
    std::borrow::Cow::Owned(out)
}

/// Mask a file written in pieces (a streamed manifest or docs page), when there are secrets.
pub fn mask_file(path: &std::path::Path) -> std::io::Result<()> {
    if secrets().is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)?;
    if let std::borrow::Cow::Owned(masked) = mask(&text) {
        std::fs::write(path, masked)?;
    }
    Ok(())
}
