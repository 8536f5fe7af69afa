//! Snowflake's HTTP API, spoken as its drivers speak it: a login request that opens a session
//! (database, schema, warehouse and role as the profile says, `query_tag` as a session
//! parameter), then one query request per statement with the session's token. Results come
//! back as JSON rows or as Arrow IPC (`rowsetBase64`), both read into text cells here.
//!
//! The endpoint is `https://<account>.snowflakecomputing.com` unless the profile names a
//! `host`, `port` and `protocol` (a local emulator). Secrets go into the login request's body
//! and nowhere else: no message, log or error text built here contains them.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::Array as _;
use base64::Engine as _;
use serde_json::{Value as Json, json};

use super::{Adapter, Connection, DbError, Failure, Interrupt, Scratch};
use crate::artifacts::catalog::CatalogTable;
use crate::config::{Secret, Snowflake, Target};
use crate::diagnostics::{Code, Problem};
use crate::dialect::{Statement, StatementKind};
use crate::materialize::incremental::AdapterRules;
use crate::materialize::{Column, Existing, Kind};
use crate::render::{Introspect, QueryError, QueryTable, Relation};

/// How long one request may take before it is a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// An open Snowflake session.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Secret,
    sequence: AtomicU64,
    /// The statement running now, for an abort request: its request id and text.
    running: Mutex<Option<(String, String)>>,
}

/// What a statement returned: its columns (name and Snowflake type) and its rows as text.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    pub columns: Vec<(String, String)>,
    pub rows: Vec<Vec<Option<String>>>,
    /// Snowflake's id of the query.
    pub query_id: Option<String>,
}

/// A statement Snowflake refused, with its error code and SQL state.
#[derive(Debug, Clone, PartialEq)]
pub struct SnowflakeError {
    pub code: String,
    pub sql_state: Option<String>,
    pub message: String,
    /// Where the result of a statement still running can be asked for (`getResultUrl`).
    pub result_url: Option<String>,
}

/// The codes of a statement that is still running: its result is to be asked for again.
const IN_PROGRESS: [&str; 2] = ["333333", "333334"];

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
        let key_pair = secret(sf, "private_key").is_some() || sf.private_key_path.is_some();
        match (secret(sf, "password"), secret(sf, "token")) {
            _ if key_pair => {
                let jwt = key_pair_jwt(sf, user)
                    .map_err(|why| refused(why, "check `private_key_path` (or `private_key`) and `private_key_passphrase` in the profile"))?;
                data["AUTHENTICATOR"] = json!("SNOWFLAKE_JWT");
                data["TOKEN"] = json!(jwt.0);
            }
            (Some(password), _) => data["PASSWORD"] = json!(password.0),
            (None, Some(token)) => {
                data["AUTHENTICATOR"] = json!("PROGRAMMATIC_ACCESS_TOKEN");
                data["TOKEN"] = json!(token.0);
            }
            (None, None) => {
                return Err(refused(
                    "needs a password, a private key or a token to log in".into(),
                    "set `password:`, `private_key_path:` or a programmatic access `token:` in the profile, from env_var()",
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
            running: Mutex::new(None),
        })
    }

    /// Run one statement in the session and read what it returns.
    pub fn query(&self, sql: &str) -> Result<Answer, SnowflakeError> {
        let request = uuid::Uuid::new_v4().to_string();
        *self.running.lock().expect("running lock") = Some((request.clone(), sql.to_string()));
        let answer = self.query_as(&request, sql);
        *self.running.lock().expect("running lock") = None;
        answer
    }

    /// The columns a statement returns, with their Snowflake types.
    pub fn query_typed(&self, sql: &str) -> Result<Vec<(String, String)>, SnowflakeError> {
        let request = uuid::Uuid::new_v4().to_string();
        let data = self.request(&request, sql)?;
        Ok(row_types(&data)
            .into_iter()
            .map(|(name, kind, scale)| (name, type_name(&kind, Some(scale))))
            .collect())
    }

    /// Ask Snowflake to cancel the statement running in this session, if any.
    pub fn abort(&self) {
        let Some((request, sql)) = self.running.lock().expect("running lock").clone() else {
            return;
        };
        let url = format!("{}/queries/v1/abort-request", self.base);
        let body = json!({ "sqlText": sql, "requestId": request }).to_string();
        let _ = post(&self.agent, &url, Some(&self.token), &body);
    }

    fn query_as(&self, request: &str, sql: &str) -> Result<Answer, SnowflakeError> {
        let data = self.request(request, sql)?;
        read_answer(&data).map_err(|why| SnowflakeError {
            code: "result".to_string(),
            sql_state: None,
            result_url: None,
            message: format!("the result cannot be read: {why}"),
        })
    }

    fn request(&self, request: &str, sql: &str) -> Result<Json, SnowflakeError> {
        let url = format!("{}/queries/v1/query-request?requestId={request}", self.base);
        let body = json!({
            "sqlText": sql,
            "asyncExec": false,
            "sequenceId": self.sequence.fetch_add(1, Ordering::Relaxed),
            "querySubmissionTime": 0,
        })
        .to_string();
        let unreachable = |why: String| SnowflakeError {
            code: "unreachable".to_string(),
            sql_state: None,
            result_url: None,
            message: format!("Snowflake at {} cannot be reached: {why}", self.base),
        };
        let mut answer = post(&self.agent, &url, Some(&self.token), &body);
        // A statement still running when the request's time is up (about 45 s) is answered
        // with "in progress" and where to ask for its result: ask until it is done.
        let mut wait = Duration::from_millis(100);
        loop {
            let result_url = match &answer {
                Err(Fault::Refused(e)) if IN_PROGRESS.contains(&e.code.as_str()) => e
                    .result_url
                    .clone()
                    .ok_or_else(|| unreachable("no result URL for a running statement".into()))?,
                _ => break,
            };
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(2));
            answer = get(
                &self.agent,
                &format!("{}{result_url}", self.base),
                &self.token,
            );
        }
        let mut answer = answer.map_err(|e| match e {
            Fault::Refused(e) => e,
            Fault::Unreachable(why) => unreachable(why),
        })?;
        Ok(answer["data"].take())
    }
}

impl Drop for Client {
    /// Close the session (best effort: the warehouse ends it on its own after a while).
    fn drop(&mut self) {
        let url = format!("{}/session?delete=true", self.base);
        let _ = post(&self.agent, &url, Some(&self.token), "{}");
    }
}

/// The login token of key-pair authentication: a JWT signed (RS256) with the profile's private
/// key (`private_key_path`, or `private_key` as PEM or base64 DER; PKCS#8, encrypted with
/// `private_key_passphrase` or not). Snowflake finds the user's public key by the fingerprint
/// in `iss`: the SHA-256 of the key's DER form, in base64. It is valid for an hour.
fn key_pair_jwt(sf: &Snowflake, user: &str) -> Result<Secret, String> {
    use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
    use sha2::Digest as _;
    let text = match (&sf.private_key_path, secret(sf, "private_key")) {
        (_, Some(key)) => key.0.clone(),
        (Some(path), None) => {
            let path = std::path::Path::new(path);
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the private key `{}`: {e}", path.display()))?
        }
        (None, None) => return Err("has no private key".to_string()),
    };
    let passphrase = secret(sf, "private_key_passphrase");
    let bad = |e: &dyn std::fmt::Display| format!("cannot use the private key: {e}");
    let key = if text.contains("-----BEGIN") {
        match passphrase {
            Some(p) => rsa::PrivateKey::from_pkcs8_encrypted_pem(&text, p.0.as_bytes()),
            None => rsa::PrivateKey::from_pkcs8_pem(&text),
        }
        .map_err(|e| bad(&e))?
    } else {
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| bad(&e))?;
        match passphrase {
            Some(p) => rsa::PrivateKey::from_pkcs8_encrypted_der(&der, p.0.as_bytes()),
            None => rsa::PrivateKey::from_pkcs8_der(&der),
        }
        .map_err(|e| bad(&e))?
    };
    let public = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| bad(&e))?;
    let fingerprint =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(public.as_bytes()));
    // The account's name without its region or cloud (`xy12345.eu-west-1` is `XY12345`).
    let account = sf
        .account
        .split('.')
        .next()
        .unwrap_or_default()
        .to_uppercase();
    let subject = format!("{account}.{}", user.to_uppercase());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": format!("{subject}.SHA256:{fingerprint}"),
        "sub": subject,
        "iat": now,
        "exp": now + 3600,
    });
    let der = {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        key.to_pkcs1_der().map_err(|e| bad(&e))?
    };
    let signing = jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &signing,
    )
    .map(Secret)
    .map_err(|e| bad(&e))
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
    let response = request
        .send(body.as_bytes())
        .map_err(|e| Fault::Unreachable(e.to_string()))?;
    judge(response)
}

/// A GET of a statement's result (`getResultUrl`), in the session.
fn get(agent: &ureq::Agent, url: &str, token: &Secret) -> Result<Json, Fault> {
    let response = agent
        .get(url)
        .header("Accept", "application/snowflake")
        .header("Authorization", format!("Snowflake Token=\"{}\"", token.0))
        .call()
        .map_err(|e| Fault::Unreachable(e.to_string()))?;
    judge(response)
}

/// Snowflake's JSON answer, or its error as a `Fault`.
fn judge(mut response: ureq::http::Response<ureq::Body>) -> Result<Json, Fault> {
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
            result_url: answer["data"]["getResultUrl"].as_str().map(String::from),
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

/// Each column of an answer: its name, Snowflake's type (lower case) and scale.
fn row_types(data: &Json) -> Vec<(String, String, i64)> {
    data["rowtype"]
        .as_array()
        .map(|types| {
            types
                .iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or_default().to_string(),
                        t["type"].as_str().unwrap_or_default().to_ascii_lowercase(),
                        t["scale"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The columns and rows of a query's answer, in JSON or Arrow. Dates, times and timestamps,
/// which Snowflake sends as numbers since the epoch, are read into their ISO text.
fn read_answer(data: &Json) -> Result<Answer, String> {
    let types = row_types(data);
    let raw = match data["queryResultFormat"].as_str() {
        Some("arrow") => {
            let encoded = data["rowsetBase64"].as_str().unwrap_or_default();
            arrow_rows(encoded, &types)?
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
    let rows = raw
        .into_iter()
        .map(|row: Vec<Option<String>>| {
            row.into_iter()
                .enumerate()
                .map(|(i, cell)| {
                    cell.map(|c| match types.get(i) {
                        Some((_, kind, _)) => from_epoch(kind, c),
                        None => c,
                    })
                })
                .collect()
        })
        .collect();
    Ok(Answer {
        columns: types.into_iter().map(|(n, t, _)| (n, t)).collect(),
        rows,
        query_id: data["queryId"].as_str().map(String::from),
    })
}

/// A date (days), time or timestamp (seconds with a fraction, a time zone's offset after a
/// space) since the epoch, as ISO text; any other cell as it is.
fn from_epoch(kind: &str, cell: String) -> String {
    let numeric = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
    };
    if kind == "date" && numeric(&cell) {
        if let Ok(days) = cell.parse::<i64>()
            && let Some(d) = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|e| e.checked_add_signed(chrono::Duration::days(days)))
        {
            return d.to_string();
        }
        return cell;
    }
    if !(kind.starts_with("timestamp") || kind == "time") {
        return cell;
    }
    let seconds = cell.split(' ').next().unwrap_or_default();
    if !numeric(seconds) {
        return cell;
    }
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, "0"));
    let (Ok(whole), Ok(nanos)) = (
        whole.parse::<i64>(),
        format!("{fraction:0<9}")[..9].parse::<u32>(),
    ) else {
        return cell;
    };
    let Some(t) = chrono::DateTime::from_timestamp(whole, nanos).map(|t| t.naive_utc()) else {
        return cell;
    };
    if kind == "time" {
        t.time().format("%H:%M:%S%.f").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S%.f").to_string()
    }
}

/// The rows of an Arrow IPC stream, each cell as text (null as `None`). Snowflake's own
/// encodings are read by the column's type: a timestamp as a struct of epoch seconds and
/// nanoseconds, or as an integer of scaled seconds; a scaled number as an integer.
fn arrow_rows(
    encoded: &str,
    types: &[(String, String, i64)],
) -> Result<Vec<Vec<Option<String>>>, String> {
    use arrow_array::cast::AsArray as _;
    use arrow_array::types::{Int32Type, Int64Type};
    if encoded.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| e.to_string())?;
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| e.to_string())?;
    let options = arrow_cast::display::FormatOptions::default();
    let scaled = |value: i64, scale: i64| -> String {
        let scale = usize::try_from(scale).unwrap_or(0);
        if scale == 0 {
            return value.to_string();
        }
        let digits = format!("{:0>width$}", value.unsigned_abs(), width = scale + 1);
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        format!("{}{whole}.{fraction}", if value < 0 { "-" } else { "" })
    };
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
            let mut row = Vec::with_capacity(batch.num_columns());
            for (i, (column, formatter)) in batch.columns().iter().zip(&formatters).enumerate() {
                if column.is_null(r) {
                    row.push(None);
                    continue;
                }
                let (kind, scale) = types.get(i).map_or(("", 0), |(_, k, s)| (k.as_str(), *s));
                let timestamp = kind.starts_with("timestamp") || kind == "time";
                let cell = if timestamp && let Some(parts) = column.as_struct_opt() {
                    let epoch = parts
                        .column_by_name("epoch")
                        .and_then(|c| c.as_primitive_opt::<Int64Type>())
                        .map_or(0, |c| c.value(r));
                    let fraction = parts
                        .column_by_name("fraction")
                        .and_then(|c| c.as_primitive_opt::<Int32Type>())
                        .map_or(0, |c| c.value(r));
                    format!("{epoch}.{fraction:09}")
                } else if (timestamp || kind == "fixed")
                    && scale > 0
                    && let Some(ints) = column.as_primitive_opt::<Int64Type>()
                {
                    scaled(ints.value(r), scale)
                } else {
                    formatter.value(r).to_string()
                };
                row.push(Some(cell));
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// A name as Snowflake stores it: an unquoted part folded to upper case.
fn stored(part: &str, quoted: bool) -> String {
    if quoted {
        part.to_string()
    } else {
        part.to_uppercase()
    }
}

/// The key of a relation: database, schema and name as Snowflake stores them.
fn relation_key(relation: &Relation, database: &str) -> (String, String, String) {
    let q = relation.quoting;
    (
        stored(relation.database.as_deref().unwrap_or(database), q.database),
        stored(&relation.schema, q.schema),
        stored(&relation.identifier, q.identifier),
    )
}

/// A text literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A Snowflake column type as `describe` and the information schema name it, from a result's
/// row type (`fixed` with its scale, `text`, `real`…).
fn type_name(kind: &str, scale: Option<i64>) -> String {
    match kind.to_ascii_lowercase().as_str() {
        "fixed" => match scale {
            Some(s) if s > 0 => format!("NUMBER(38,{s})"),
            _ => "NUMBER(38,0)".to_string(),
        },
        "text" => "VARCHAR".to_string(),
        "real" => "FLOAT".to_string(),
        other => other.to_uppercase(),
    }
}

/// One run's Snowflake warehouse: which schemas and relations exist (read once when it opens,
/// then kept up to date by what the run builds), and a session per worker.
pub struct Warehouse {
    target: Target,
    sf: Snowflake,
    location: String,
    relations: Mutex<HashMap<(String, String, String), Kind>>,
    schemas: Mutex<HashSet<(String, String)>>,
    /// The databases whose `information_schema` was read (the target's when it opens, another
    /// on first ask).
    read: Mutex<HashSet<String>>,
    /// Every session handed out, for Ctrl-C's abort requests.
    sessions: Arc<Mutex<Vec<Arc<Client>>>>,
}

impl Warehouse {
    /// Log in, and read the schemas and relations of the target's database.
    pub fn open(target: &Target, sf: &Snowflake) -> Result<Warehouse, Problem> {
        let client = Client::login(target, sf)?;
        let database = stored(&target.database, target.quote_policy.database == Some(true));
        let unreadable = |e: SnowflakeError| {
            Problem::new(
                Code::Database,
                format!(
                    "target `{}`: the relations of database `{database}` cannot be read: {e}",
                    target.name
                ),
            )
            .help("check that the database exists and the profile's role may read its information_schema")
        };
        let (schemas, relations) = read_database(&client, &database).map_err(unreadable)?;
        Ok(Warehouse {
            target: target.clone(),
            sf: sf.clone(),
            location: endpoint(sf),
            relations: Mutex::new(relations),
            schemas: Mutex::new(schemas),
            read: Mutex::new(HashSet::from([database])),
            sessions: Arc::new(Mutex::new(vec![Arc::new(client)])),
        })
    }

    /// Read another database's schemas and relations the first time a plan asks about it
    /// (one that cannot be read has none).
    fn read_other(&self, database: &str) {
        // Held while reading: another worker asking about the same database waits for the
        // answer rather than taking its relations for absent.
        let mut read = self.read.lock().expect("read lock");
        if !read.insert(database.to_string()) {
            return;
        }
        let client = self.sessions.lock().expect("sessions lock")[0].clone();
        if let Ok((schemas, relations)) = read_database(&client, database) {
            self.schemas.lock().expect("schemas lock").extend(schemas);
            self.relations
                .lock()
                .expect("relations lock")
                .extend(relations);
        }
    }
}

/// Which schemas and relations a database has: two `information_schema` reads.
type DatabaseContents = (
    HashSet<(String, String)>,
    HashMap<(String, String, String), Kind>,
);

fn read_database(client: &Client, database: &str) -> Result<DatabaseContents, SnowflakeError> {
    let mut schemas = HashSet::new();
    let answer = client.query(&format!(
        "select schema_name from {database}.information_schema.schemata"
    ))?;
    for row in answer.rows {
        if let Some(Some(schema)) = row.into_iter().next() {
            schemas.insert((database.to_string(), schema));
        }
    }
    let mut relations = HashMap::new();
    let answer = client.query(&format!(
        "select table_schema, table_name, table_type from {database}.information_schema.tables"
    ))?;
    for row in answer.rows {
        if let [Some(schema), Some(name), Some(kind)] = row.as_slice() {
            let kind = if kind.eq_ignore_ascii_case("VIEW") {
                Kind::View
            } else {
                Kind::Table
            };
            relations.insert((database.to_string(), schema.clone(), name.clone()), kind);
        }
    }
    Ok((schemas, relations))
}

impl Existing for Warehouse {
    fn kind_of(&self, relation: &Relation) -> Option<Kind> {
        let key = relation_key(relation, &self.target.database);
        self.read_other(&key.0);
        self.relations
            .lock()
            .expect("relations lock")
            .get(&key)
            .copied()
    }

    fn schema_exists(&self, database: Option<&str>, schema: &str) -> bool {
        let q = crate::dialect::quoting(&self.target);
        let database = stored(database.unwrap_or(&self.target.database), q.database);
        self.read_other(&database);
        self.schemas
            .lock()
            .expect("schemas lock")
            .contains(&(database, stored(schema, q.schema)))
    }

    fn rules(&self) -> AdapterRules {
        AdapterRules::SNOWFLAKE
    }
}

impl Adapter for Warehouse {
    fn database(&self) -> &str {
        &self.target.database
    }

    fn location(&self) -> &str {
        &self.location
    }

    fn connect(&self) -> Result<Arc<dyn Connection>, Problem> {
        let client = Arc::new(Client::login(&self.target, &self.sf)?);
        self.sessions
            .lock()
            .expect("sessions lock")
            .push(client.clone());
        Ok(Arc::new(Worker {
            client,
            database: self.target.database.clone(),
            last_query: Mutex::new(None),
        }))
    }

    fn create_schemas(&self, schemas: &[(Option<String>, String)]) -> Result<(), Problem> {
        let client = self.sessions.lock().expect("sessions lock")[0].clone();
        let dialect = crate::dialect::of(&self.target);
        for (database, schema) in schemas {
            if self.schema_exists(database.as_deref(), schema) {
                continue;
            }
            let sql = format!(
                "create schema if not exists {}",
                dialect.schema(database.as_deref(), schema)
            );
            client.query(&sql).map_err(|e| {
                Problem::new(
                    Code::Database,
                    format!("schema `{schema}` cannot be created: {e}"),
                )
                .help("check that the profile's role may create schemas in the database")
            })?;
            let q = crate::dialect::quoting(&self.target);
            self.schemas.lock().expect("schemas lock").insert((
                stored(
                    database.as_deref().unwrap_or(&self.target.database),
                    q.database,
                ),
                stored(schema, q.schema),
            ));
        }
        Ok(())
    }

    fn record(&self, relation: &Relation, kind: Option<Kind>) {
        let key = relation_key(relation, &self.target.database);
        let mut relations = self.relations.lock().expect("relations lock");
        match kind {
            Some(k) => relations.insert(key, k),
            None => relations.remove(&key),
        };
    }

    fn interrupter(&self) -> Interrupt {
        let sessions = self.sessions.clone();
        Box::new(move || {
            for client in sessions.lock().expect("sessions lock").iter() {
                client.abort();
            }
        })
    }

    fn scratch(
        &self,
        _target: &Target,
        _catalogs: &std::collections::BTreeSet<String>,
    ) -> Result<Scratch, Problem> {
        Err(Problem::new(
            Code::UnitTest,
            "unit tests do not run on Snowflake yet",
        )
        .help("run unit tests on a DuckDB target, or leave them out with --exclude test_type:unit"))
    }
}

/// One worker thread's Snowflake session.
pub struct Worker {
    client: Arc<Client>,
    database: String,
    /// The id of the last query of the node being built.
    last_query: Mutex<Option<String>>,
}

impl Worker {
    fn failed(statement: usize, e: SnowflakeError) -> DbError {
        DbError {
            statement,
            line: error_line(&e.message),
            failure: if e.code == "000604" {
                // "SQL execution canceled"
                Failure::Interrupted
            } else {
                Failure::Other
            },
            message: e.to_string(),
        }
    }
}

/// `line N` in a Snowflake compilation error: the line of the statement it points at.
fn error_line(message: &str) -> Option<usize> {
    let at = message.find("line ")?;
    let digits: String = message[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl Connection for Worker {
    fn run_rendering(
        &self,
        statements: &[Statement],
        render: &mut dyn FnMut(usize) -> Result<String, DbError>,
    ) -> Result<Option<usize>, DbError> {
        // Only DML reports rows: a table's count would cost a round trip of its own.
        let mut rows: Option<usize> = None;
        let mut in_transaction = false;
        let rollback = |open: bool| {
            if open {
                let _ = self.client.query("rollback");
            }
        };
        for (i, s) in statements.iter().enumerate() {
            let sql = if s.kind == StatementKind::PendingHook {
                match render(i) {
                    Ok(sql) => sql,
                    Err(e) => {
                        rollback(in_transaction);
                        return Err(e);
                    }
                }
            } else {
                s.sql.clone()
            };
            if sql.trim().is_empty() {
                continue;
            }
            let answer = match self.client.query(&sql) {
                Ok(a) => a,
                Err(e) => {
                    rollback(in_transaction);
                    return Err(Self::failed(i, e));
                }
            };
            if answer.query_id.is_some() {
                self.last_query
                    .lock()
                    .expect("query lock")
                    .clone_from(&answer.query_id);
            }
            match s.kind {
                StatementKind::Begin => in_transaction = true,
                StatementKind::Commit => in_transaction = false,
                // The rows that break the rule: the first column of each, and the count.
                StatementKind::Check if !answer.rows.is_empty() => {
                    rollback(in_transaction);
                    return Err(super::check_failure(i, &answer.rows));
                }
                // DML answers with the rows it changed, a column per kind of change.
                StatementKind::Dml => {
                    let changed: usize = answer.rows.first().map_or(0, |r| {
                        r.iter()
                            .filter_map(|c| c.as_deref().and_then(|c| c.parse::<usize>().ok()))
                            .sum()
                    });
                    rows = Some(rows.map_or(changed, |r| r.max(changed)));
                }
                _ => {}
            }
        }
        Ok(rows)
    }

    fn working_on(&self, _unique_id: &str) {
        *self.last_query.lock().expect("query lock") = None;
    }

    fn response(&self) -> Option<serde_json::Map<String, Json>> {
        let id = self.last_query.lock().expect("query lock").clone()?;
        let mut map = serde_json::Map::new();
        map.insert("query_id".to_string(), json!(id));
        Some(map)
    }

    fn describe(&self, statement: &Statement) -> Result<Vec<Column>, DbError> {
        let answer = self
            .client
            .query_typed(&statement.sql)
            .map_err(|e| Self::failed(0, e))?;
        Ok(answer
            .into_iter()
            .map(|(name, data_type)| Column { name, data_type })
            .collect())
    }

    fn relation_columns(&self, relation: &Relation) -> Result<Vec<Column>, DbError> {
        Introspect::columns(self, relation).map_err(|e| DbError::other(e.message))
    }

    fn catalog(&self) -> Result<Vec<CatalogTable>, QueryError> {
        let database = stored(&self.database, false);
        let answer = self
            .client
            .query(&format!(
                "select c.table_schema, c.table_name, t.table_type, c.column_name, c.data_type, c.ordinal_position \
                 from {database}.information_schema.columns as c \
                 join {database}.information_schema.tables as t \
                 on t.table_schema = c.table_schema and t.table_name = c.table_name \
                 where c.table_schema <> 'INFORMATION_SCHEMA' \
                 order by 1, 2, 6"
            ))
            .map_err(|e| QueryError {
                message: e.to_string(),
            })?;
        Ok(super::catalog_tables(
            &database,
            answer.rows.into_iter().map(|row| {
                let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                [cell(0), cell(1), cell(2), cell(3), cell(4), cell(5)]
            }),
        ))
    }
}

impl Introspect for Worker {
    fn query(&self, sql: &str) -> Result<QueryTable, QueryError> {
        let answer = self.client.query(sql).map_err(|e| QueryError {
            message: e.to_string(),
        })?;
        Ok(super::text_table(answer.columns, answer.rows, |t| {
            matches!(t.to_ascii_lowercase().as_str(), "fixed" | "real")
        }))
    }

    fn relation_kind(&self, relation: &Relation) -> Result<Option<Kind>, QueryError> {
        let (database, schema, name) = relation_key(relation, &self.database);
        let answer = self
            .client
            .query(&format!(
                "select table_type from {database}.information_schema.tables where table_schema = {} and table_name = {}",
                literal(&schema),
                literal(&name)
            ))
            .map_err(|e| QueryError {
                message: e.to_string(),
            })?;
        Ok(answer.rows.first().map(|r| {
            if r.first()
                .cloned()
                .flatten()
                .is_some_and(|k| k.eq_ignore_ascii_case("VIEW"))
            {
                Kind::View
            } else {
                Kind::Table
            }
        }))
    }

    fn columns(&self, relation: &Relation) -> Result<Vec<Column>, QueryError> {
        let (database, schema, name) = relation_key(relation, &self.database);
        let answer = self
            .client
            .query(&format!(
                "select column_name, data_type, numeric_precision, numeric_scale from {database}.information_schema.columns \
                 where table_schema = {} and table_name = {} order by ordinal_position",
                literal(&schema),
                literal(&name)
            ))
            .map_err(|e| QueryError {
                message: e.to_string(),
            })?;
        Ok(answer
            .rows
            .into_iter()
            .map(|r| {
                let cell = |i: usize| r.get(i).cloned().flatten();
                Column {
                    name: cell(0).unwrap_or_default(),
                    data_type: full_type(
                        &cell(1).unwrap_or_default(),
                        cell(2).as_deref(),
                        cell(3).as_deref(),
                    ),
                }
            })
            .collect())
    }
}

/// A column's type as `information_schema.columns` gives it, with a number's precision and
/// scale (`NUMBER(10,2)`): a plan that casts to the type or adds the column must keep them.
fn full_type(data_type: &str, precision: Option<&str>, scale: Option<&str>) -> String {
    match (precision, scale) {
        (Some(p), Some(s)) if data_type.eq_ignore_ascii_case("number") => {
            format!("{data_type}({p},{s})")
        }
        _ => data_type.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_keeps_its_precision_and_scale() {
        assert_eq!(full_type("NUMBER", Some("10"), Some("2")), "NUMBER(10,2)");
        assert_eq!(full_type("TEXT", None, None), "TEXT");
        assert_eq!(full_type("FLOAT", None, None), "FLOAT");
    }

    #[test]
    fn epoch_numbers_are_read_as_iso_dates_and_times() {
        assert_eq!(from_epoch("date", "19724".into()), "2024-01-02");
        assert_eq!(
            from_epoch("timestamp_ntz", "1704164645.250000000".into()),
            "2024-01-02 03:04:05.250"
        );
        // A zoned timestamp: seconds in UTC, then the offset.
        assert_eq!(
            from_epoch("timestamp_tz", "1704164645.000000000 1500".into()),
            "2024-01-02 03:04:05"
        );
        assert_eq!(from_epoch("time", "3723.5".into()), "01:02:03.500");
        // Already text, or not a date at all: as it is.
        assert_eq!(from_epoch("date", "2024-01-02".into()), "2024-01-02");
        assert_eq!(from_epoch("text", "19724".into()), "19724");
    }

    fn profile(secrets: &[(&str, &str)], path: Option<&str>) -> Snowflake {
        Snowflake {
            account: "xy12345.eu-west-1".into(),
            secrets: secrets
                .iter()
                .map(|(k, v)| ((*k).to_string(), Secret((*v).to_string())))
                .collect(),
            private_key_path: path.map(String::from),
            ..Snowflake::default()
        }
    }

    /// The claims of a JWT, checked against the key's public half (RS256).
    fn verified(jwt: &str, key_pem: &str) -> Json {
        use rsa::pkcs1::EncodeRsaPublicKey as _;
        use rsa::pkcs8::DecodePrivateKey as _;
        let key = rsa::PrivateKey::from_pkcs8_pem(key_pem).unwrap();
        let public = key.to_public_key().to_pkcs1_der().unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<Json>(
            jwt,
            &jsonwebtoken::DecodingKey::from_rsa_der(public.as_bytes()),
            &validation,
        )
        .unwrap()
        .claims
    }

    #[test]
    fn a_key_pair_login_token_is_signed_and_names_the_key_by_its_fingerprint() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/snowflake");
        let pem = std::fs::read_to_string(format!("{dir}/test_key.p8")).unwrap();
        let fingerprint = std::fs::read_to_string(format!("{dir}/test_key.sha256")).unwrap();
        let expected_iss = format!("XY12345.DEV.SHA256:{}", fingerprint.trim());
        // From a file, from the profile's text, and encrypted with a passphrase.
        let path = format!("{dir}/test_key.p8");
        let encrypted = std::fs::read_to_string(format!("{dir}/test_key_encrypted.p8")).unwrap();
        for sf in [
            profile(&[], Some(&path)),
            profile(&[("private_key", &pem)], None),
            profile(
                &[
                    ("private_key", &encrypted),
                    ("private_key_passphrase", "open-sesame"),
                ],
                None,
            ),
        ] {
            let jwt = key_pair_jwt(&sf, "dev").unwrap();
            let claims = verified(&jwt.0, &pem);
            assert_eq!(claims["iss"], expected_iss.as_str());
            assert_eq!(claims["sub"], "XY12345.DEV");
            assert_eq!(
                claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
                3600
            );
        }
        // A wrong passphrase is a message that does not repeat it.
        let sf = profile(
            &[
                ("private_key", &encrypted),
                ("private_key_passphrase", "not-it"),
            ],
            None,
        );
        let why = key_pair_jwt(&sf, "dev").unwrap_err();
        assert!(why.starts_with("cannot use the private key"), "{why}");
        assert!(!why.contains("not-it"), "{why}");
    }

    /// A statement still running when its request returns is asked for again at its result
    /// URL, in the session, until it is done (a stand-in server plays Snowflake's part).
    #[test]
    fn a_long_statement_is_polled_until_its_result_is_ready() {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let serving = server.clone();
        let thread = std::thread::spawn(move || {
            let mut polls = 0;
            let mut seen = Vec::new();
            for request in serving.incoming_requests() {
                let url = request.url().to_string();
                let authorized = request
                    .headers()
                    .iter()
                    .any(|h| h.field.equiv("Authorization") && h.value.as_str().contains("tok-1"));
                seen.push((request.method().to_string(), url.clone(), authorized));
                let running = json!({"success": false, "code": "333334", "message": "running",
                    "data": {"getResultUrl": "/queries/q1/result"}});
                let body = if url.starts_with("/session/v1/login-request") {
                    json!({"success": true, "data": {"token": "tok-1"}})
                } else if url.starts_with("/queries/v1/query-request") {
                    running
                } else if url == "/queries/q1/result" && polls == 0 {
                    polls += 1;
                    running
                } else if url == "/queries/q1/result" {
                    json!({"success": true, "data": {"queryResultFormat": "json",
                        "rowtype": [{"name": "X", "type": "fixed", "scale": 0}],
                        "rowset": [["42"]]}})
                } else {
                    json!({"success": true})
                };
                let done = url.starts_with("/session?delete");
                let _ = request.respond(tiny_http::Response::from_string(body.to_string()));
                if done {
                    break;
                }
            }
            seen
        });
        let sf = Snowflake {
            account: "a".into(),
            user: Some("u".into()),
            secrets: vec![("password".into(), Secret("p".into()))],
            host: Some("127.0.0.1".into()),
            port: Some(port),
            protocol: Some("http".into()),
            ..Snowflake::default()
        };
        let target =
            super::super::test_target("d", crate::config::Credentials::Snowflake(sf.clone()));
        let client = Client::login(&target, &sf).unwrap();
        let answer = client.query("select 42 as x").unwrap();
        assert_eq!(answer.rows, vec![vec![Some("42".to_string())]]);
        drop(client);
        let seen = thread.join().unwrap();
        let polled: Vec<_> = seen
            .iter()
            .filter(|(m, u, _)| m == "GET" && u == "/queries/q1/result")
            .collect();
        assert_eq!(polled.len(), 2, "{seen:?}");
        // Every request after the login carries the session's token.
        assert!(
            seen.iter().skip(1).all(|(_, _, authorized)| *authorized),
            "{seen:?}"
        );
    }

    /// Ctrl-C on a running statement: `abort` sends Snowflake's abort request for it, and its
    /// next poll reports it cancelled (000604), which fails the node as interrupted.
    #[test]
    fn an_aborted_statement_stops_as_interrupted() {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let serving = server.clone();
        let thread = std::thread::spawn(move || {
            let mut aborted = false;
            let mut seen = Vec::new();
            for mut request in serving.incoming_requests() {
                let url = request.url().to_string();
                let mut body = String::new();
                std::io::Read::read_to_string(request.as_reader(), &mut body).unwrap();
                seen.push((url.clone(), body));
                let running = json!({"success": false, "code": "333334", "message": "running",
                    "data": {"getResultUrl": "/queries/q1/result"}});
                let answer = if url.starts_with("/session/v1/login-request") {
                    json!({"success": true, "data": {"token": "tok-1"}})
                } else if url.starts_with("/queries/v1/abort-request") {
                    aborted = true;
                    json!({"success": true})
                } else if url == "/queries/q1/result" && aborted {
                    json!({"success": false, "code": "000604",
                        "message": "SQL execution canceled", "data": {"sqlState": "57014"}})
                } else if url.starts_with("/session?delete") {
                    json!({"success": true})
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                    running
                };
                let done = url.starts_with("/session?delete");
                let _ = request.respond(tiny_http::Response::from_string(answer.to_string()));
                if done {
                    break;
                }
            }
            seen
        });
        let sf = Snowflake {
            account: "a".into(),
            user: Some("u".into()),
            secrets: vec![("password".into(), Secret("p".into()))],
            host: Some("127.0.0.1".into()),
            port: Some(port),
            protocol: Some("http".into()),
            ..Snowflake::default()
        };
        let target =
            super::super::test_target("d", crate::config::Credentials::Snowflake(sf.clone()));
        let client = Arc::new(Client::login(&target, &sf).unwrap());
        let running = client.clone();
        let query = std::thread::spawn(move || running.query("select system$wait(60)"));
        while client.running.lock().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        client.abort();
        let err = query.join().unwrap().unwrap_err();
        assert_eq!(err.code, "000604", "{err}");
        assert_eq!(Worker::failed(0, err).failure, Failure::Interrupted);
        drop(client);
        let seen = thread.join().unwrap();
        let abort = seen
            .iter()
            .find(|(u, _)| u.starts_with("/queries/v1/abort-request"))
            .unwrap_or_else(|| panic!("{seen:?}"));
        assert!(abort.1.contains("select system$wait(60)"), "{seen:?}");
    }

    #[test]
    fn a_query_string_value_is_percent_encoded() {
        assert_eq!(percent("my db/ü"), "my%20db%2F%C3%BC");
    }
}
