//! BigQuery's REST API (`bigquery/v2`), spoken as its client libraries speak it: every
//! statement is a query job (`jobs.query`, in the profile's `location`, with its
//! `maximum_bytes_billed`), polled (`jobs.getQueryResults`) while it runs and paged while it
//! returns rows. A transaction is one script (the dialect writes it so): BigQuery needs no
//! session, and every worker shares one HTTP agent.
//!
//! Credentials, by the profile's `method` (dbt-bigquery's):
//! - `oauth-secrets`: a `token`, or a `refresh_token` with `client_id`, `client_secret` and
//!   `token_uri`, exchanged for an access token;
//! - `service-account` (`keyfile`) / `service-account-json` (`keyfile_json`): an RS256 JWT
//!   signed with the key and exchanged at the key's `token_uri`;
//! - `oauth`: the application default credentials (`GOOGLE_APPLICATION_CREDENTIALS`, else
//!   gcloud's file); none at all against a profile's `api_endpoint` (a local emulator).
//!
//! Access tokens are renewed before they expire. Secrets go into the token request and the
//! `Authorization` header only: no message, log or error text built here contains them.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::{Adapter, Connection, DbError, Failure, Interrupt, Scratch};
use crate::artifacts::catalog::CatalogTable;
use crate::config::{BigQuery, Secret, Target};
use crate::diagnostics::{Code, Problem};
use crate::dialect::{Statement, StatementKind};
use crate::materialize::incremental::AdapterRules;
use crate::materialize::{Column, Existing, Kind};
use crate::render::{Introspect, QueryError, QueryTable, Relation};

/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long BigQuery may hold a request for a job to finish before answering "not yet": short,
/// so that a long job's id is known (and Ctrl-C can cancel it) within seconds.
const WAIT_MS: u64 = 5_000;
/// The scope xform's tokens ask for.
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// What a statement returned: its columns (name and BigQuery type) and rows as text.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    pub columns: Vec<(String, String)>,
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows a DML statement changed.
    pub affected: Option<usize>,
    /// Bytes the job processed (or, dry, would process).
    pub bytes: Option<u64>,
    /// The job's id and location.
    pub job: Option<(String, Option<String>)>,
}

/// A job BigQuery refused or failed.
#[derive(Debug, Clone, PartialEq)]
pub struct BigQueryError {
    /// BigQuery's reason (`invalidQuery`, `notFound`…), or the HTTP status.
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for BigQueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

/// Where tokens come from.
enum Auth {
    /// No `Authorization` header: a local emulator.
    Anonymous,
    /// A given access token.
    Token(Secret),
    /// A token from a grant (a signed JWT or a refresh token), renewed before it expires.
    Grant {
        token_uri: String,
        grant: Grant,
        cached: Mutex<Option<(Secret, Instant)>>,
    },
}

enum Grant {
    ServiceAccount {
        email: String,
        key: Secret,
    },
    Refresh {
        refresh_token: Secret,
        client_id: String,
        client_secret: Secret,
    },
}

/// A BigQuery client: the endpoint, the project jobs run in, and credentials.
pub struct Client {
    agent: ureq::Agent,
    /// `…/bigquery/v2`
    base: String,
    /// The project jobs are billed to (`execution_project`, else the target's).
    project: String,
    location: Option<String>,
    maximum_bytes_billed: Option<u64>,
    /// How long one job may run (`job_execution_timeout_seconds`).
    job_timeout: Option<Duration>,
    auth: Auth,
    /// Jobs running now, for Ctrl-C: `(job id, location)`.
    running: Mutex<Vec<(String, Option<String>)>>,
}

/// The endpoint of the profile: its `api_endpoint`, else Google's.
pub fn endpoint(bq: &BigQuery) -> String {
    bq.api_endpoint
        .clone()
        .unwrap_or_else(|| "https://bigquery.googleapis.com".to_string())
        .trim_end_matches('/')
        .to_string()
}

fn secret<'a>(bq: &'a BigQuery, key: &str) -> Option<&'a Secret> {
    bq.secrets.iter().find(|(k, _)| k == key).map(|(_, s)| s)
}

/// A service-account key file's fields that sign a token.
fn service_account(text: &str, whence: &str) -> Result<(String, Secret, Option<String>), String> {
    let key: Json =
        serde_json::from_str(text).map_err(|e| format!("the key in {whence} is not JSON: {e}"))?;
    let field = |name: &str| key[name].as_str().map(str::to_string);
    match (field("client_email"), field("private_key")) {
        (Some(email), Some(pem)) => Ok((email, Secret(pem), field("token_uri"))),
        _ => Err(format!(
            "the key in {whence} has no `client_email` and `private_key`: is it a service account's key?"
        )),
    }
}

impl Auth {
    fn of(target: &Target, bq: &BigQuery) -> Result<Auth, Problem> {
        let bad = |why: String, help: &str| {
            Problem::new(
                Code::Profile,
                format!(
                    "target `{}` of profile `{}`: {why}",
                    target.name, target.profile_name
                ),
            )
            .help(help.to_string())
        };
        let key_grant = |text: &str, whence: &str, token_uri: Option<&String>| {
            let (email, key, uri) = service_account(text, whence).map_err(|why| {
                bad(
                    why,
                    "give the JSON key file of a service account (`keyfile:` or `keyfile_json:`)",
                )
            })?;
            Ok::<_, Problem>(Auth::Grant {
                token_uri: token_uri
                    .cloned()
                    .or(uri)
                    .unwrap_or_else(|| GOOGLE_TOKEN_URI.to_string()),
                grant: Grant::ServiceAccount { email, key },
                cached: Mutex::new(None),
            })
        };
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|e| {
                bad(
                    format!("the key file `{path}` cannot be read: {e}"),
                    "check `keyfile:` in the profile",
                )
            })
        };
        match bq.method.as_str() {
            "oauth-secrets" => {
                if let Some(token) = secret(bq, "token") {
                    return Ok(Auth::Token(token.clone()));
                }
                match (
                    secret(bq, "refresh_token"),
                    &bq.client_id,
                    secret(bq, "client_secret"),
                ) {
                    (Some(refresh), Some(id), Some(client_secret)) => Ok(Auth::Grant {
                        token_uri: bq
                            .token_uri
                            .clone()
                            .unwrap_or_else(|| GOOGLE_TOKEN_URI.to_string()),
                        grant: Grant::Refresh {
                            refresh_token: refresh.clone(),
                            client_id: id.clone(),
                            client_secret: client_secret.clone(),
                        },
                        cached: Mutex::new(None),
                    }),
                    _ => Err(bad(
                        "method `oauth-secrets` needs a `token`, or a `refresh_token` with `client_id` and `client_secret`".to_string(),
                        "set them in the profile, from env_var()",
                    )),
                }
            }
            "service-account" => {
                let Some(path) = &bq.keyfile else {
                    return Err(bad(
                        "method `service-account` needs a `keyfile`".to_string(),
                        "set `keyfile:` to the path of the service account's JSON key",
                    ));
                };
                key_grant(&read(path)?, &format!("`{path}`"), bq.token_uri.as_ref())
            }
            "service-account-json" => {
                let Some(json) = secret(bq, "keyfile_json") else {
                    return Err(bad(
                        "method `service-account-json` needs `keyfile_json`".to_string(),
                        "set `keyfile_json:` to the key file's fields",
                    ));
                };
                key_grant(&json.0, "`keyfile_json`", bq.token_uri.as_ref())
            }
            "oauth" => {
                // Application default credentials: a service account's key file, or gcloud's
                // user credentials (a refresh token).
                let path = std::env::var("GOOGLE_APPLICATION_CREDENTIALS")
                    .ok()
                    .filter(|p| !p.is_empty())
                    .or_else(|| {
                        let home = std::env::var("HOME").ok()?;
                        let p =
                            format!("{home}/.config/gcloud/application_default_credentials.json");
                        std::path::Path::new(&p).exists().then_some(p)
                    });
                let Some(path) = path else {
                    if bq.api_endpoint.is_some() {
                        return Ok(Auth::Anonymous);
                    }
                    return Err(bad(
                        "method `oauth` found no application default credentials".to_string(),
                        "run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or use method `service-account`",
                    ));
                };
                let text = read(&path)?;
                let doc: Json = serde_json::from_str(&text).unwrap_or_default();
                if doc["type"] == "authorized_user" {
                    let field = |k: &str| doc[k].as_str().map(str::to_string);
                    match (
                        field("refresh_token"),
                        field("client_id"),
                        field("client_secret"),
                    ) {
                        (Some(refresh), Some(id), Some(client_secret)) => Ok(Auth::Grant {
                            token_uri: GOOGLE_TOKEN_URI.to_string(),
                            grant: Grant::Refresh {
                                refresh_token: Secret(refresh),
                                client_id: id,
                                client_secret: Secret(client_secret),
                            },
                            cached: Mutex::new(None),
                        }),
                        _ => Err(bad(
                            format!("the credentials in `{path}` are incomplete"),
                            "run `gcloud auth application-default login` again",
                        )),
                    }
                } else {
                    key_grant(&text, &format!("`{path}`"), None)
                }
            }
            other => Err(bad(
                format!("BigQuery method `{other}` is not one xform knows"),
                "use `oauth`, `oauth-secrets`, `service-account` or `service-account-json`",
            )),
        }
    }

    /// The `Authorization` header's value, asking for a token first when there is none or it
    /// expires within a minute.
    fn header(&self, agent: &ureq::Agent) -> Result<Option<String>, String> {
        match self {
            Auth::Anonymous => Ok(None),
            Auth::Token(t) => Ok(Some(format!("Bearer {}", t.0))),
            Auth::Grant {
                token_uri,
                grant,
                cached,
            } => {
                let mut cached = cached.lock().expect("token lock");
                if let Some((token, until)) = &*cached
                    && Instant::now() + Duration::from_secs(60) < *until
                {
                    return Ok(Some(format!("Bearer {}", token.0)));
                }
                let (token, lifetime) = grant.exchange(agent, token_uri)?;
                let header = format!("Bearer {}", token.0);
                *cached = Some((token, Instant::now() + lifetime));
                Ok(Some(header))
            }
        }
    }
}

impl Grant {
    /// An access token and how long it lives.
    fn exchange(&self, agent: &ureq::Agent, token_uri: &str) -> Result<(Secret, Duration), String> {
        let form: Vec<(&str, String)> = match self {
            Grant::ServiceAccount { email, key } => vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                ),
                ("assertion", signed_assertion(email, key, token_uri)?.0),
            ],
            Grant::Refresh {
                refresh_token,
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", refresh_token.0.clone()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.0.clone()),
            ],
        };
        let mut response = agent
            .post(token_uri)
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
            .map_err(|e| format!("the token endpoint {token_uri} cannot be reached: {e}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let doc: Json = serde_json::from_str(&text).unwrap_or_default();
        if status >= 400 {
            // OAuth's error code and description never echo the secret.
            let why = doc["error_description"]
                .as_str()
                .or_else(|| doc["error"].as_str())
                .unwrap_or("no reason given");
            return Err(format!(
                "the token endpoint refused the credentials ({status}): {why}"
            ));
        }
        let token = doc["access_token"]
            .as_str()
            .ok_or("the token endpoint answered without an access token")?;
        let lifetime = doc["expires_in"].as_u64().unwrap_or(3600);
        Ok((Secret(token.to_string()), Duration::from_secs(lifetime)))
    }
}

/// The JWT a service account signs to ask for a token (RS256, an hour long).
fn signed_assertion(email: &str, key: &Secret, token_uri: &str) -> Result<Secret, String> {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    let bad = |e: &dyn std::fmt::Display| format!("the service account's key cannot sign: {e}");
    let key = rsa::PrivateKey::from_pkcs8_pem(&key.0).map_err(|e| bad(&e))?;
    let der = key.to_pkcs1_der().map_err(|e| bad(&e))?;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": email,
        "scope": SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
    )
    .map(Secret)
    .map_err(|e| bad(&e))
}

/// Why a request did not give an answer.
enum Fault {
    Unreachable(String),
    Refused(BigQueryError),
}

impl From<Fault> for BigQueryError {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Refused(e) => e,
            Fault::Unreachable(why) => BigQueryError {
                reason: "unreachable".to_string(),
                message: format!("BigQuery could not be reached: {why}"),
            },
        }
    }
}

/// Percent-encode a URL query value.
fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

impl Client {
    /// A client for the target, with a token asked for already (so that wrong credentials
    /// are found when the run opens).
    pub fn open(target: &Target, bq: &BigQuery) -> Result<Client, Problem> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let auth = Auth::of(target, bq)?;
        let client = Client {
            agent,
            base: format!("{}/bigquery/v2", endpoint(bq)),
            project: bq
                .execution_project
                .clone()
                .unwrap_or_else(|| target.database.clone()),
            location: bq.location.clone(),
            maximum_bytes_billed: bq.maximum_bytes_billed,
            job_timeout: bq.job_timeout_seconds.map(Duration::from_secs),
            auth,
            running: Mutex::new(Vec::new()),
        };
        client.auth.header(&client.agent).map_err(|why| {
            Problem::new(
                Code::Database,
                format!(
                    "target `{}` of profile `{}`: BigQuery gave no access token: {why}",
                    target.name, target.profile_name
                ),
            )
            .help("check the credentials of the profile's `method`")
        })?;
        Ok(client)
    }

    fn send(&self, method: &str, url: &str, body: Option<&Json>) -> Result<Json, Fault> {
        self.send_within(method, url, body, REQUEST_TIMEOUT)
    }

    /// A request that may take `within` at most.
    fn send_within(
        &self,
        method: &str,
        url: &str,
        body: Option<&Json>,
        within: Duration,
    ) -> Result<Json, Fault> {
        let header = self.auth.header(&self.agent).map_err(Fault::Unreachable)?;
        let response = if method == "GET" {
            let mut request = self
                .agent
                .get(url)
                .config()
                .timeout_global(Some(within))
                .build();
            if let Some(h) = &header {
                request = request.header("Authorization", h);
            }
            request.call()
        } else {
            let mut request = self
                .agent
                .post(url)
                .config()
                .timeout_global(Some(within))
                .build()
                .header("Content-Type", "application/json");
            if let Some(h) = &header {
                request = request.header("Authorization", h);
            }
            let text = body.map(Json::to_string).unwrap_or_default();
            request.send(text.as_bytes())
        };
        let mut response = response.map_err(|e| Fault::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let doc: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if status >= 400 {
            let error = &doc["error"];
            return Err(Fault::Refused(BigQueryError {
                reason: error["errors"][0]["reason"]
                    .as_str()
                    .or_else(|| error["status"].as_str())
                    .map_or_else(|| status.to_string(), str::to_string),
                message: error["message"]
                    .as_str()
                    .map_or_else(|| format!("HTTP {status}"), str::to_string),
            }));
        }
        // A finished job that failed (as emulators answer it).
        if let Some(first) = doc["errors"].as_array().and_then(|e| e.first())
            && doc["jobComplete"] != false
        {
            return Err(Fault::Refused(BigQueryError {
                reason: first["reason"].as_str().unwrap_or("error").to_string(),
                message: first["message"].as_str().unwrap_or_default().to_string(),
            }));
        }
        Ok(doc)
    }

    /// Run one statement (or script) as a query job and read all it returns.
    pub fn query(&self, sql: &str) -> Result<Answer, BigQueryError> {
        self.job(sql, false, None)
    }

    /// `query`, the job labelled with the node it builds (`xform_node`).
    pub fn query_for(&self, sql: &str, node: Option<&str>) -> Result<Answer, BigQueryError> {
        self.job(sql, false, node)
    }

    /// What a statement would do, without running it: its columns and the bytes it would
    /// scan.
    pub fn dry_run(&self, sql: &str) -> Result<Answer, BigQueryError> {
        self.job(sql, true, None)
    }

    fn job(&self, sql: &str, dry: bool, node: Option<&str>) -> Result<Answer, BigQueryError> {
        // With a job timeout, BigQuery stops the job itself (`jobTimeoutMs`); xform stops
        // waiting at the same time, cancels the job, and says so.
        let started = Instant::now();
        let wait = self.job_timeout.map_or(WAIT_MS, |t| {
            WAIT_MS.min(u64::try_from(t.as_millis()).unwrap_or(WAIT_MS))
        });
        let timed_out = |job: Option<&str>, location: Option<&String>| {
            if let Some(id) = job {
                self.cancel_job(id, location.map(String::as_str));
            }
            BigQueryError {
                reason: "timeout".to_string(),
                message: format!(
                    "the job ran longer than the profile's job_execution_timeout_seconds ({} s) and was cancelled",
                    self.job_timeout.unwrap_or_default().as_secs()
                ),
            }
        };
        let within = |elapsed: Duration| match self.job_timeout {
            // Room for the answer to come back once BigQuery stops the job.
            Some(t) => REQUEST_TIMEOUT.min(t.saturating_sub(elapsed) + Duration::from_secs(1)),
            None => REQUEST_TIMEOUT,
        };
        let past = |elapsed: Duration| self.job_timeout.is_some_and(|t| elapsed >= t);
        let mut body = json!({
            "query": sql,
            "useLegacySql": false,
            "timeoutMs": wait,
            "dryRun": dry,
            "formatOptions": { "useInt64Timestamp": true },
        });
        if let Some(t) = self.job_timeout {
            body["jobTimeoutMs"] = json!(t.as_millis().to_string());
        }
        if let Some(node) = node {
            body["labels"] = json!({ "xform_node": label_value(node) });
        }
        if let Some(location) = &self.location {
            body["location"] = json!(location);
        }
        if let Some(max) = self.maximum_bytes_billed {
            body["maximumBytesBilled"] = json!(max.to_string());
        }
        let mut doc = match self.send_within(
            "POST",
            &format!("{}/projects/{}/queries", self.base, percent(&self.project)),
            Some(&body),
            within(Duration::ZERO),
        ) {
            Ok(doc) => doc,
            Err(Fault::Unreachable(_)) if past(started.elapsed()) => {
                return Err(timed_out(None, None));
            }
            Err(f) => return Err(f.into()),
        };
        let job = doc["jobReference"]["jobId"].as_str().map(str::to_string);
        let location = doc["jobReference"]["location"]
            .as_str()
            .map(str::to_string)
            .or_else(|| self.location.clone());
        let results = |page: Option<&str>| {
            let mut url = format!(
                "{}/projects/{}/queries/{}?timeoutMs={wait}&formatOptions.useInt64Timestamp=true",
                self.base,
                percent(&self.project),
                percent(job.as_deref().unwrap_or_default())
            );
            if let Some(l) = &location {
                url.push_str("&location=");
                url.push_str(&percent(l));
            }
            if let Some(p) = page {
                url.push_str("&pageToken=");
                url.push_str(&percent(p));
            }
            url
        };
        // Still running: wait for it, cancellable meanwhile.
        if doc["jobComplete"] == false {
            let Some(id) = job.clone() else {
                return Err(BigQueryError {
                    reason: "result".to_string(),
                    message: "BigQuery answered a running job without its id".to_string(),
                });
            };
            self.running
                .lock()
                .expect("running lock")
                .push((id.clone(), location.clone()));
            let waited = (|| {
                while doc["jobComplete"] == false {
                    if past(started.elapsed()) {
                        return Err(timed_out(Some(&id), location.as_ref()));
                    }
                    doc = match self.send_within(
                        "GET",
                        &results(None),
                        None,
                        within(started.elapsed()),
                    ) {
                        Ok(doc) => doc,
                        Err(Fault::Unreachable(_)) if past(started.elapsed()) => {
                            return Err(timed_out(Some(&id), location.as_ref()));
                        }
                        Err(f) => return Err(f.into()),
                    };
                }
                Ok::<(), BigQueryError>(())
            })();
            self.running
                .lock()
                .expect("running lock")
                .retain(|(j, _)| j != &id);
            waited?;
        }
        let fields = doc["schema"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut answer = Answer {
            columns: fields
                .iter()
                .map(|f| {
                    (
                        f["name"].as_str().unwrap_or_default().to_string(),
                        field_type(f),
                    )
                })
                .collect(),
            affected: doc["numDmlAffectedRows"]
                .as_str()
                .and_then(|n| n.parse().ok()),
            bytes: doc["totalBytesProcessed"]
                .as_str()
                .and_then(|n| n.parse().ok()),
            rows: Vec::new(),
            job: job.clone().map(|j| (j, location.clone())),
        };
        loop {
            for row in doc["rows"].as_array().into_iter().flatten() {
                let cells = row["f"].as_array().cloned().unwrap_or_default();
                answer.rows.push(
                    cells
                        .iter()
                        .zip(&fields)
                        .map(|(cell, field)| cell_text(&cell["v"], field))
                        .collect(),
                );
            }
            match doc["pageToken"].as_str() {
                Some(token) if job.is_some() && !dry => {
                    let url = results(Some(token));
                    doc = self.send("GET", &url, None)?;
                }
                _ => break,
            }
        }
        Ok(answer)
    }

    /// Cancel every job running now.
    pub fn cancel(&self) {
        let running = self.running.lock().expect("running lock").clone();
        for (job, location) in running {
            self.cancel_job(&job, location.as_deref());
        }
    }

    fn cancel_job(&self, job: &str, location: Option<&str>) {
        let mut url = format!(
            "{}/projects/{}/jobs/{}/cancel",
            self.base,
            percent(&self.project),
            percent(job)
        );
        if let Some(l) = location {
            url.push_str("?location=");
            url.push_str(&percent(l));
        }
        let _ = self.send("POST", &url, Some(&json!({})));
    }

    /// Every dataset of `project`.
    fn datasets(&self, project: &str) -> Result<Vec<String>, BigQueryError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/projects/{}/datasets?all=true",
                self.base,
                percent(project)
            );
            if let Some(p) = &page {
                url.push_str("&pageToken=");
                url.push_str(&percent(p));
            }
            let doc = self.send("GET", &url, None)?;
            for d in doc["datasets"].as_array().into_iter().flatten() {
                if let Some(id) = d["datasetReference"]["datasetId"].as_str() {
                    out.push(id.to_string());
                }
            }
            match doc["nextPageToken"].as_str() {
                Some(p) => page = Some(p.to_string()),
                None => return Ok(out),
            }
        }
    }

    /// Every table and view of a dataset (none when it does not exist).
    fn tables(&self, project: &str, dataset: &str) -> Result<Vec<(String, Kind)>, BigQueryError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/projects/{}/datasets/{}/tables?maxResults=1000",
                self.base,
                percent(project),
                percent(dataset)
            );
            if let Some(p) = &page {
                url.push_str("&pageToken=");
                url.push_str(&percent(p));
            }
            let doc = match self.send("GET", &url, None) {
                Ok(doc) => doc,
                Err(Fault::Refused(e)) if e.reason == "notFound" || e.reason == "404" => {
                    return Ok(Vec::new());
                }
                Err(f) => return Err(f.into()),
            };
            for t in doc["tables"].as_array().into_iter().flatten() {
                if let Some(id) = t["tableReference"]["tableId"].as_str() {
                    out.push((id.to_string(), kind_of_type(t["type"].as_str())));
                }
            }
            match doc["nextPageToken"].as_str() {
                Some(p) => page = Some(p.to_string()),
                None => return Ok(out),
            }
        }
    }

    /// A table's kind and columns (`None` when it does not exist).
    fn table(
        &self,
        relation: &Relation,
        project: &str,
    ) -> Result<Option<(Kind, Vec<Column>)>, BigQueryError> {
        let url = format!(
            "{}/projects/{}/datasets/{}/tables/{}",
            self.base,
            percent(relation.database.as_deref().unwrap_or(project)),
            percent(&relation.schema),
            percent(&relation.identifier)
        );
        match self.send("GET", &url, None) {
            Ok(doc) => {
                let columns = doc["schema"]["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| Column {
                        name: f["name"].as_str().unwrap_or_default().to_string(),
                        data_type: field_type(f),
                    })
                    .collect();
                Ok(Some((kind_of_type(doc["type"].as_str()), columns)))
            }
            Err(Fault::Refused(e)) if e.reason == "notFound" || e.reason == "404" => Ok(None),
            Err(f) => Err(f.into()),
        }
    }
}

/// A node's id as a label value: lower case letters, digits, `_` and `-`, 63 at most
/// (`model.shop.orders` is `model-shop-orders`).
fn label_value(id: &str) -> String {
    id.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .take(63)
        .collect()
}

fn kind_of_type(t: Option<&str>) -> Kind {
    match t {
        Some("VIEW" | "MATERIALIZED_VIEW") => Kind::View,
        _ => Kind::Table,
    }
}

/// A result field's type in standard SQL's names (`INT64`, `ARRAY<STRING>`,
/// `STRUCT<a INT64>`).
fn field_type(field: &Json) -> String {
    let base = match field["type"].as_str().unwrap_or_default() {
        "INTEGER" => "INT64".to_string(),
        "FLOAT" => "FLOAT64".to_string(),
        "BOOLEAN" => "BOOL".to_string(),
        "RECORD" | "STRUCT" => {
            let inner: Vec<String> = field["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    format!(
                        "{} {}",
                        f["name"].as_str().unwrap_or_default(),
                        field_type(f)
                    )
                })
                .collect();
            format!("STRUCT<{}>", inner.join(", "))
        }
        other => other.to_string(),
    };
    if field["mode"] == "REPEATED" {
        format!("ARRAY<{base}>")
    } else {
        base
    }
}

/// A result cell as text: a timestamp (microseconds since the epoch, as asked) as
/// `YYYY-MM-DD HH:MM:SS[.f]`, a repeated or record value as JSON, anything else as BigQuery
/// wrote it.
fn cell_text(value: &Json, field: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) if field["type"] == "TIMESTAMP" && field["mode"] != "REPEATED" => {
            Some(timestamp_text(s))
        }
        // `2024-01-02T03:04:05` as every other warehouse writes a timestamp without a zone.
        Json::String(s) if field["type"] == "DATETIME" && field["mode"] != "REPEATED" => {
            Some(s.replacen('T', " ", 1))
        }
        Json::String(s) => Some(s.clone()),
        other => Some(plain_json(other).to_string()),
    }
}

fn timestamp_text(micros: &str) -> String {
    let Ok(n) = micros.parse::<i64>() else {
        // Seconds in floating point (without `useInt64Timestamp`), or already text.
        return match micros.parse::<f64>() {
            #[allow(
                clippy::cast_possible_truncation,
                reason = "a timestamp's microseconds fit an i64; out of range saturates"
            )]
            Ok(s) => timestamp_text(&format!("{}", (s * 1e6).round() as i64)),
            Err(_) => micros.to_string(),
        };
    };
    chrono::DateTime::from_timestamp_micros(n).map_or_else(
        || micros.to_string(),
        |t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string(),
    )
}

/// BigQuery's `{"f": [{"v": …}]}` and `[{"v": …}]` shapes as plain JSON.
fn plain_json(value: &Json) -> Json {
    match value {
        Json::Array(items) => Json::Array(items.iter().map(|i| plain_json(&i["v"])).collect()),
        Json::Object(o) if o.contains_key("f") => Json::Array(
            o["f"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| plain_json(&i["v"]))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `[line:column]` in a BigQuery error: the line of the statement it points at.
fn error_line(message: &str) -> Option<usize> {
    let at = message.rfind(" at [")?;
    let digits: String = message[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One run's BigQuery project: its datasets and their relations (read once when it opens,
/// then kept up to date by what the run builds; a dataset of another project is read when a
/// plan first asks about it).
pub struct Warehouse {
    target: Target,
    client: Arc<Client>,
    location: String,
    /// Relations by `(project, dataset, table)`, and the datasets read.
    relations: Mutex<HashMap<(String, String, String), Kind>>,
    read: Mutex<HashSet<(String, String)>>,
    schemas: Mutex<HashSet<(String, String)>>,
}

impl Warehouse {
    /// Ask for a token, and read the datasets and relations of the target's project.
    pub fn open(target: &Target, bq: &BigQuery) -> Result<Warehouse, Problem> {
        let client = Client::open(target, bq)?;
        let project = target.database.clone();
        let unreadable = |e: BigQueryError| {
            Problem::new(
                Code::Database,
                format!(
                    "target `{}` of profile `{}`: the datasets of project `{project}` cannot be read at {}: {e}",
                    target.name,
                    target.profile_name,
                    endpoint(bq)
                ),
            )
            .help("check `project` (and `api_endpoint`) in the profile, the network, and that the credentials may list the project's datasets")
        };
        let mut schemas = HashSet::new();
        let mut relations = HashMap::new();
        let mut read = HashSet::new();
        for dataset in client.datasets(&project).map_err(unreadable)? {
            for (table, kind) in client.tables(&project, &dataset).map_err(unreadable)? {
                relations.insert((project.clone(), dataset.clone(), table), kind);
            }
            read.insert((project.clone(), dataset.clone()));
            schemas.insert((project.clone(), dataset));
        }
        Ok(Warehouse {
            target: target.clone(),
            client: Arc::new(client),
            location: format!("BigQuery project {project} at {}", endpoint(bq)),
            relations: Mutex::new(relations),
            read: Mutex::new(read),
            schemas: Mutex::new(schemas),
        })
    }

    fn key(&self, relation: &Relation) -> (String, String, String) {
        (
            relation
                .database
                .clone()
                .unwrap_or_else(|| self.target.database.clone()),
            relation.schema.clone(),
            relation.identifier.clone(),
        )
    }
}

impl Existing for Warehouse {
    fn kind_of(&self, relation: &Relation) -> Option<Kind> {
        let key = self.key(relation);
        let dataset = (key.0.clone(), key.1.clone());
        // Every dataset of the target's project was read; another project's, on first ask.
        if key.0 != self.target.database
            && !self.read.lock().expect("read lock").contains(&dataset)
            && let Ok(tables) = self.client.tables(&key.0, &key.1)
        {
            let mut relations = self.relations.lock().expect("relations lock");
            for (table, kind) in tables {
                relations.insert((key.0.clone(), key.1.clone(), table), kind);
            }
            self.read.lock().expect("read lock").insert(dataset);
        }
        self.relations
            .lock()
            .expect("relations lock")
            .get(&key)
            .copied()
    }

    fn schema_exists(&self, database: Option<&str>, schema: &str) -> bool {
        self.schemas.lock().expect("schemas lock").contains(&(
            database.unwrap_or(&self.target.database).to_string(),
            schema.to_string(),
        ))
    }

    fn rules(&self) -> AdapterRules {
        AdapterRules::BIGQUERY
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
        Ok(Arc::new(Worker {
            client: self.client.clone(),
            project: self.target.database.clone(),
            node: Mutex::new(None),
            done: Mutex::new((None, 0)),
        }))
    }

    fn create_schemas(&self, schemas: &[(Option<String>, String)]) -> Result<(), Problem> {
        let dialect = crate::dialect::of(&self.target);
        for (database, schema) in schemas {
            if self.schema_exists(database.as_deref(), schema) {
                continue;
            }
            // A dataset is made where the profile's jobs run.
            let mut sql = format!(
                "create schema if not exists {}",
                dialect.schema(database.as_deref(), schema)
            );
            if let Some(location) = &self.client.location {
                let _ = write!(sql, " options(location={})", dialect.literal(location));
            }
            self.client.query(&sql).map_err(|e| {
                Problem::new(
                    Code::Database,
                    format!("dataset `{schema}` cannot be created: {e}"),
                )
                .help("check that the credentials may create datasets in the project")
            })?;
            self.schemas.lock().expect("schemas lock").insert((
                database
                    .clone()
                    .unwrap_or_else(|| self.target.database.clone()),
                schema.clone(),
            ));
        }
        Ok(())
    }

    fn record(&self, relation: &Relation, kind: Option<Kind>) {
        let key = self.key(relation);
        let mut relations = self.relations.lock().expect("relations lock");
        match kind {
            Some(k) => relations.insert(key, k),
            None => relations.remove(&key),
        };
    }

    fn interrupter(&self) -> Interrupt {
        let client = self.client.clone();
        Box::new(move || client.cancel())
    }

    fn scratch(
        &self,
        _target: &Target,
        _catalogs: &std::collections::BTreeSet<String>,
    ) -> Result<Scratch, Problem> {
        Err(Problem::new(
            Code::UnitTest,
            "BigQuery has no scratch database: its unit tests run as one query each",
        ))
    }
}

/// A node's last job (id and location) and the bytes all its jobs processed.
type NodeJobs = (Option<(String, Option<String>)>, u64);

/// One worker thread's view: jobs in the target's project.
pub struct Worker {
    client: Arc<Client>,
    project: String,
    /// The node being built, whose id labels its jobs.
    node: Mutex<Option<String>>,
    /// Its last job and the bytes its jobs processed, for `run_results.json`.
    done: Mutex<NodeJobs>,
}

fn failed(statement: usize, e: &BigQueryError) -> DbError {
    DbError {
        statement,
        line: error_line(&e.message),
        failure: if e.reason == "stopped" {
            // A job cancelled (Ctrl-C).
            Failure::Interrupted
        } else {
            Failure::Other
        },
        message: e.to_string(),
    }
}

impl Connection for Worker {
    fn run_rendering(
        &self,
        statements: &[Statement],
        render: &mut dyn FnMut(usize) -> Result<String, DbError>,
    ) -> Result<Option<usize>, DbError> {
        // A transaction is one script statement: a failed script rolls itself back.
        let mut rows: Option<usize> = None;
        for (i, s) in statements.iter().enumerate() {
            let sql = if s.kind == StatementKind::PendingHook {
                render(i)?
            } else {
                s.sql.clone()
            };
            if sql.trim().is_empty() {
                continue;
            }
            let node = self.node.lock().expect("node lock").clone();
            let answer = self
                .client
                .query_for(&sql, node.as_deref())
                .map_err(|e| failed(i, &e))?;
            {
                let mut done = self.done.lock().expect("done lock");
                if answer.job.is_some() {
                    done.0.clone_from(&answer.job);
                }
                done.1 += answer.bytes.unwrap_or(0);
            }
            match s.kind {
                StatementKind::Check if !answer.rows.is_empty() => {
                    return Err(super::check_failure(i, &answer.rows));
                }
                StatementKind::Dml => {
                    if let Some(n) = answer.affected {
                        rows = Some(rows.map_or(n, |r| r.max(n)));
                    }
                }
                _ => {}
            }
        }
        Ok(rows)
    }

    fn working_on(&self, unique_id: &str) {
        *self.node.lock().expect("node lock") = Some(unique_id.to_string());
        *self.done.lock().expect("done lock") = (None, 0);
    }

    fn response(&self) -> Option<serde_json::Map<String, Json>> {
        let (job, bytes) = self.done.lock().expect("done lock").clone();
        let (id, location) = job?;
        let mut map = serde_json::Map::new();
        map.insert("job_id".to_string(), json!(id));
        map.insert("project_id".to_string(), json!(self.client.project));
        if let Some(l) = location {
            map.insert("location".to_string(), json!(l));
        }
        map.insert("bytes_processed".to_string(), json!(bytes));
        Some(map)
    }

    fn describe(&self, statement: &Statement) -> Result<Vec<Column>, DbError> {
        // A dry run: the columns, nothing scanned.
        let answer = self
            .client
            .dry_run(&statement.sql)
            .map_err(|e| failed(0, &e))?;
        Ok(answer
            .columns
            .into_iter()
            .map(|(name, data_type)| Column { name, data_type })
            .collect())
    }

    fn relation_columns(&self, relation: &Relation) -> Result<Vec<Column>, DbError> {
        Introspect::columns(self, relation).map_err(|e| DbError::other(e.message))
    }

    fn catalog(&self) -> Result<Vec<CatalogTable>, QueryError> {
        let err = |e: BigQueryError| QueryError {
            message: e.to_string(),
        };
        let mut tables: Vec<CatalogTable> = Vec::new();
        let mut datasets = self.client.datasets(&self.project).map_err(err)?;
        datasets.sort();
        for dataset in datasets {
            let answer = self
                .client
                .query(&format!(
                    "select c.table_name, t.table_type, c.column_name, c.data_type, c.ordinal_position \
                     from `{p}`.`{dataset}`.INFORMATION_SCHEMA.COLUMNS as c \
                     join `{p}`.`{dataset}`.INFORMATION_SCHEMA.TABLES as t on t.table_name = c.table_name \
                     order by 1, 5",
                    p = self.project
                ))
                .map_err(err)?;
            tables.extend(super::catalog_tables(
                &self.project,
                answer.rows.into_iter().map(|row| {
                    let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                    [dataset.clone(), cell(0), cell(1), cell(2), cell(3), cell(4)]
                }),
            ));
        }
        Ok(tables)
    }
}

impl Introspect for Worker {
    fn query(&self, sql: &str) -> Result<QueryTable, QueryError> {
        let answer = self.client.query(sql).map_err(|e| QueryError {
            message: e.to_string(),
        })?;
        Ok(super::text_table(answer.columns, answer.rows, |t| {
            matches!(t, "INT64" | "FLOAT64" | "NUMERIC" | "BIGNUMERIC")
        }))
    }

    fn relation_kind(&self, relation: &Relation) -> Result<Option<Kind>, QueryError> {
        self.client
            .table(relation, &self.project)
            .map(|t| t.map(|(kind, _)| kind))
            .map_err(|e| QueryError {
                message: e.to_string(),
            })
    }

    fn columns(&self, relation: &Relation) -> Result<Vec<Column>, QueryError> {
        self.client
            .table(relation, &self.project)
            .map(|t| t.map(|(_, columns)| columns).unwrap_or_default())
            .map_err(|e| QueryError {
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_nested_values_are_read_as_text() {
        let ts = json!({"name": "t", "type": "TIMESTAMP", "mode": "NULLABLE"});
        assert_eq!(
            cell_text(&json!("1704164645250000"), &ts).unwrap(),
            "2024-01-02 03:04:05.250"
        );
        assert_eq!(
            cell_text(&json!("1.704164645E9"), &ts).unwrap(),
            "2024-01-02 03:04:05"
        );
        let array = json!({"name": "a", "type": "INTEGER", "mode": "REPEATED"});
        assert_eq!(
            cell_text(&json!([{"v": "1"}, {"v": "2"}]), &array).unwrap(),
            r#"["1","2"]"#
        );
        assert_eq!(field_type(&array), "ARRAY<INT64>");
        let record =
            json!({"name": "s", "type": "RECORD", "fields": [{"name": "q", "type": "FLOAT"}]});
        assert_eq!(field_type(&record), "STRUCT<q FLOAT64>");
        assert_eq!(cell_text(&Json::Null, &ts), None);
    }

    /// A job still running when `jobs.query` answers is polled, then read page by page; the
    /// request carries the node's label and the job timeout (a stand-in plays BigQuery).
    #[test]
    fn a_running_job_is_polled_and_paged() {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let serving = server.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for mut request in serving.incoming_requests() {
                let url = request.url().to_string();
                let mut body = String::new();
                std::io::Read::read_to_string(request.as_reader(), &mut body).unwrap();
                seen.push((url.clone(), body));
                let fields = json!([{"name": "n", "type": "INTEGER", "mode": "NULLABLE"}]);
                let answer = if url.ends_with("/queries") {
                    json!({"jobComplete": false, "jobReference": {"projectId": "p", "jobId": "j1", "location": "EU"}})
                } else if url.contains("pageToken=next") {
                    json!({"jobComplete": true, "schema": {"fields": fields}, "rows": [{"f": [{"v": "2"}]}]})
                } else {
                    json!({"jobComplete": true, "schema": {"fields": fields}, "rows": [{"f": [{"v": "1"}]}],
                        "pageToken": "next", "totalBytesProcessed": "10"})
                };
                let last = url.contains("pageToken=next");
                request
                    .respond(tiny_http::Response::from_string(answer.to_string()))
                    .unwrap();
                if last {
                    break;
                }
            }
            seen
        });
        let bq = BigQuery {
            method: "oauth-secrets".into(),
            secrets: vec![("token".into(), Secret("t0k".into()))],
            api_endpoint: Some(format!("http://127.0.0.1:{port}")),
            location: Some("EU".into()),
            job_timeout_seconds: Some(60),
            ..BigQuery::default()
        };
        let target =
            super::super::test_target("p", crate::config::Credentials::BigQuery(bq.clone()));
        let client = Client::open(&target, &bq).unwrap();
        let answer = client
            .query_for("select n from t", Some("model.p.orders"))
            .unwrap();
        assert_eq!(
            answer.rows,
            vec![vec![Some("1".to_string())], vec![Some("2".to_string())]]
        );
        assert_eq!(answer.bytes, Some(10));
        assert_eq!(answer.job, Some(("j1".to_string(), Some("EU".to_string()))));
        let seen = thread.join().unwrap();
        let sent: Json = serde_json::from_str(&seen[0].1).unwrap();
        assert_eq!(sent["labels"]["xform_node"], "model-p-orders");
        assert_eq!(sent["jobTimeoutMs"], "60000");
        assert_eq!(sent["location"], "EU");
        assert!(
            seen[1].0.starts_with("/bigquery/v2/projects/p/queries/j1?"),
            "{seen:?}"
        );
        assert!(seen[1].0.contains("location=EU"), "{seen:?}");
        assert!(seen[2].0.contains("pageToken=next"), "{seen:?}");
    }

    /// Ctrl-C on a running job: `cancel` asks BigQuery to cancel it (`jobs.cancel`), and the
    /// job's next poll reports it stopped, which fails the node as interrupted.
    #[test]
    fn a_cancelled_job_stops_as_interrupted() {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let serving = server.clone();
        let thread = std::thread::spawn(move || {
            let mut cancelled = false;
            let mut seen = Vec::new();
            for request in serving.incoming_requests() {
                let url = request.url().to_string();
                seen.push(url.clone());
                let (status, answer) = if url.contains("/jobs/j1/cancel") {
                    cancelled = true;
                    (200, json!({"job": {"id": "p:j1"}}))
                } else if cancelled && url.contains("/queries/j1") {
                    (
                        400,
                        json!({"error": {"code": 400,
                        "message": "Job execution was cancelled: User requested cancellation",
                        "errors": [{"reason": "stopped"}]}}),
                    )
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                    (
                        200,
                        json!({"jobComplete": false,
                        "jobReference": {"projectId": "p", "jobId": "j1"}}),
                    )
                };
                let done = status == 400;
                request
                    .respond(
                        tiny_http::Response::from_string(answer.to_string())
                            .with_status_code(status),
                    )
                    .unwrap();
                if done {
                    break;
                }
            }
            seen
        });
        let bq = BigQuery {
            method: "oauth-secrets".into(),
            secrets: vec![("token".into(), Secret("t0k".into()))],
            api_endpoint: Some(format!("http://127.0.0.1:{port}")),
            ..BigQuery::default()
        };
        let target =
            super::super::test_target("p", crate::config::Credentials::BigQuery(bq.clone()));
        let client = Arc::new(Client::open(&target, &bq).unwrap());
        let running = client.clone();
        let query = std::thread::spawn(move || running.query("select 1"));
        while client.running.lock().unwrap().is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        client.cancel();
        let err = query.join().unwrap().unwrap_err();
        assert_eq!(err.reason, "stopped", "{err}");
        assert_eq!(failed(0, &err).failure, Failure::Interrupted);
        let seen = thread.join().unwrap();
        assert!(
            seen.iter()
                .any(|u| u.ends_with("/projects/p/jobs/j1/cancel")),
            "{seen:?}"
        );
    }

    #[test]
    fn a_node_id_is_a_label_value() {
        assert_eq!(label_value("model.Shop.orders_v2"), "model-shop-orders_v2");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    }

    #[test]
    fn an_error_names_its_line() {
        assert_eq!(
            error_line("Syntax error: Unexpected identifier \"nope\" at [3:5]"),
            Some(3)
        );
        assert_eq!(error_line("Not found: Table x"), None);
    }

    #[test]
    fn a_service_account_signs_its_token_request() {
        use base64::Engine as _;
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/snowflake/test_key.p8"
        ))
        .unwrap();
        let jwt = signed_assertion(
            "xform@p.iam.gserviceaccount.com",
            &Secret(pem),
            "https://t/token",
        )
        .unwrap();
        let claims = jwt.0.split('.').nth(1).unwrap();
        let claims: Json = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["iss"], "xform@p.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], "https://t/token");
        assert_eq!(claims["scope"], SCOPE);
    }
}
