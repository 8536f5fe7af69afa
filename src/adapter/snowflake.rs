//! Snowflake's HTTP API, spoken as its drivers speak it: a login request that opens a session
//! (database, schema, warehouse and role as the profile says, `query_tag` as a session
//! parameter), then one query request per statement with the session's token. Results come
//! back as JSON rows or as Arrow IPC (`rowsetBase64`), both read into text cells here.
//!
//! The endpoint is `https://<account>.snowflakecomputing.com` unless the profile names a
//! `host`, `port` and `protocol` (a local emulator). Secrets go into the login request's body
//! and nowhere else: no message, log or error text built here contains them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow_array::Array as _;
use base64::Engine as _;
use serde_json::{Value as Json, json};

use crate::config::{Secret, Snowflake, Target};
use crate::diagnostics::{Code, Problem};

/// How long one request may take before it is a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// An open Snowflake session.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Secret,
    sequence: AtomicU64,
}

/// What a statement returned: its columns (name and Snowflake type) and its rows as text.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    pub columns: Vec<(String, String)>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// A statement Snowflake refused, with its error code and SQL state.
#[derive(Debug, Clone, PartialEq)]
pub struct SnowflakeError {
    pub code: String,
    pub sql_state: Option<String>,
    pub message: String,
}

impl std::fmt::Display for SnowflakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}", self.message, self.code)?;
        if let Some(state) = &self.sql_state {
            write!(f, ", SQL state {state}")?;
        }
        f.write_str(")")
    }
}

/// The endpoint of the profile: its `host`, `port` and `protocol`, else the account's URL.
pub fn endpoint(sf: &Snowflake) -> String {
    let protocol = sf.protocol.as_deref().unwrap_or("https");
    let host = sf
        .host
        .clone()
        .unwrap_or_else(|| format!("{}.snowflakecomputing.com", sf.account));
    match sf.port {
        Some(port) => format!("{protocol}://{host}:{port}"),
        None => format!("{protocol}://{host}"),
    }
}

fn secret<'a>(sf: &'a Snowflake, key: &str) -> Option<&'a Secret> {
    sf.secrets.iter().find(|(k, _)| k == key).map(|(_, s)| s)
}

impl Client {
    /// Log in with the profile's credentials (a password, or a programmatic access token).
    pub fn login(target: &Target, sf: &Snowflake) -> Result<Client, Problem> {
        let base = endpoint(sf);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let refused = |why: String, help: &str| {
            Problem::new(
                Code::Database,
                format!(
                    "target `{}` of profile `{}`: Snowflake at {base} {why}",
                    target.name, target.profile_name
                ),
            )
            .help(help.to_string())
        };
        let Some(user) = &sf.user else {
            return Err(refused(
                "needs a user to log in".into(),
                "set `user:` in the profile's output",
            ));
        };
        let mut data = json!({
            "CLIENT_APP_ID": "xform",
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "ACCOUNT_NAME": sf.account,
            "LOGIN_NAME": user,
            "SESSION_PARAMETERS": {},
        });
        match (secret(sf, "password"), secret(sf, "token")) {
            (Some(password), _) => data["PASSWORD"] = json!(password.0),
            (None, Some(token)) => {
                data["AUTHENTICATOR"] = json!("PROGRAMMATIC_ACCESS_TOKEN");
                data["TOKEN"] = json!(token.0);
            }
            (None, None) => {
                return Err(refused(
                    "needs a password or a token: xform logs in with either".into(),
                    "set `password:` (or a programmatic access `token:`) in the profile, from env_var()",
                ));
            }
        }
        if let Some(tag) = &sf.query_tag {
            data["SESSION_PARAMETERS"]["QUERY_TAG"] = json!(tag);
        }
        let mut url = format!(
            "{base}/session/v1/login-request?requestId={}",
            uuid::Uuid::new_v4()
        );
        for (key, value) in [
            ("databaseName", Some(target.database.as_str())),
            ("schemaName", Some(target.schema.as_str())),
            ("warehouse", sf.warehouse.as_deref()),
            ("roleName", sf.role.as_deref()),
        ] {
            if let Some(v) = value {
                url.push('&');
                url.push_str(key);
                url.push('=');
                url.push_str(&percent(v));
            }
        }
        let body = json!({ "data": data }).to_string();
        let answer = post(&agent, &url, None, &body).map_err(|e| match e {
            Fault::Unreachable(why) => refused(
                format!("cannot be reached: {why}"),
                "check `account` (or `host`, `port` and `protocol`) in the profile, and the network",
            ),
            Fault::Refused(e) => refused(
                format!("refused the login: {e}"),
                "check `user` and the password or token in the profile",
            ),
        })?;
        let token = answer["data"]["token"]
            .as_str()
            .ok_or_else(|| {
                refused(
                    "answered the login without a session token".into(),
                    "check that the endpoint is Snowflake's",
                )
            })?
            .to_string();
        Ok(Client {
            agent,
            base,
            token: Secret(token),
            sequence: AtomicU64::new(1),
        })
    }

    /// Run one statement in the session and read what it returns.
    pub fn query(&self, sql: &str) -> Result<Answer, SnowflakeError> {
        let url = format!(
            "{}/queries/v1/query-request?requestId={}",
            self.base,
            uuid::Uuid::new_v4()
        );
        let body = json!({
            "sqlText": sql,
            "asyncExec": false,
            "sequenceId": self.sequence.fetch_add(1, Ordering::Relaxed),
            "querySubmissionTime": 0,
        })
        .to_string();
        let answer = post(&self.agent, &url, Some(&self.token), &body).map_err(|e| match e {
            Fault::Refused(e) => e,
            Fault::Unreachable(why) => SnowflakeError {
                code: "unreachable".to_string(),
                sql_state: None,
                message: format!("Snowflake at {} cannot be reached: {why}", self.base),
            },
        })?;
        read_answer(&answer["data"]).map_err(|why| SnowflakeError {
            code: "result".to_string(),
            sql_state: None,
            message: format!("the result cannot be read: {why}"),
        })
    }
}

impl Drop for Client {
    /// Close the session (best effort: the warehouse ends it on its own after a while).
    fn drop(&mut self) {
        let url = format!("{}/session?delete=true", self.base);
        let _ = post(&self.agent, &url, Some(&self.token), "{}");
    }
}

/// Why a request failed: the network, or Snowflake's own answer.
enum Fault {
    Unreachable(String),
    Refused(SnowflakeError),
}

fn post(agent: &ureq::Agent, url: &str, token: Option<&Secret>, body: &str) -> Result<Json, Fault> {
    let mut request = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/snowflake");
    if let Some(token) = token {
        request = request.header("Authorization", format!("Snowflake Token=\"{}\"", token.0));
    }
    let mut response = request
        .send(body.as_bytes())
        .map_err(|e| Fault::Unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| Fault::Unreachable(e.to_string()))?;
    let answer: Json = serde_json::from_str(&text).map_err(|_| {
        Fault::Unreachable(format!(
            "HTTP {status}, and the answer is not Snowflake's JSON"
        ))
    })?;
    if answer["success"].as_bool() != Some(true) {
        return Err(Fault::Refused(SnowflakeError {
            code: answer["code"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}"), String::from),
            sql_state: answer["data"]["sqlState"].as_str().map(String::from),
            message: answer["message"]
                .as_str()
                .unwrap_or("no message")
                .to_string(),
        }));
    }
    Ok(answer)
}

/// A query string's value, percent-encoded.
fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The columns and rows of a query's answer, in JSON or Arrow.
fn read_answer(data: &Json) -> Result<Answer, String> {
    let columns: Vec<(String, String)> = data["rowtype"]
        .as_array()
        .map(|types| {
            types
                .iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or_default().to_string(),
                        t["type"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = match data["queryResultFormat"].as_str() {
        Some("arrow") => {
            let encoded = data["rowsetBase64"].as_str().unwrap_or_default();
            arrow_rows(encoded)?
        }
        _ => data["rowset"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        row.as_array()
                            .map(|cells| {
                                cells.iter().map(|c| c.as_str().map(String::from)).collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    Ok(Answer { columns, rows })
}

/// The rows of an Arrow IPC stream, each cell as text (null as `None`).
fn arrow_rows(encoded: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    if encoded.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| e.to_string())?;
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| e.to_string())?;
    let options = arrow_cast::display::FormatOptions::default();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for r in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| (!c.is_null(r)).then(|| f.value(r).to_string()))
                    .collect(),
            );
        }
    }
    Ok(rows)
}
