//! Aggregate routes (backend for frontend): one client request fans out to several upstream
//! calls, run concurrently as tasks on the same worker, and their JSON answers are merged
//! into one object under the parts' keys, e.g. `GET /api/dashboard/1` →
//! `{"profile": …, "orders": …, "errors": []}`.
//!
//! Each call carries the client's end-to-end headers and the identity headers the route's
//! authentication wrote, has its own path (a template over the route's parameters) and its
//! own timeout, so the whole answer takes about as long as the slowest part. A failed or late
//! optional part becomes `null` and is listed in `errors` with its reason; a failed required
//! part makes the answer 502. `X-Coregate-Complete` says whether every part answered. Never
//! buffers more than [`PART_BYTES_MAX`] of one part.

use std::io::Write as _;
use std::rc::Rc;
use std::time::Duration;

use coregate_config::{AggregatePart, TemplatePart, Variable};
use monoio::io::AsyncWriteRentExt;
use serde_json::value::RawValue;

use crate::http::{ChunkedDecoder, Method, ResponseBody, ResponseHead};
use crate::proxy::{read_more, upstream_connection, InFlight, ReadFailure};
use crate::router::Params;
use crate::timer::Timer;
use crate::worker::{View, Worker};

/// Largest body of one part, bytes; a larger answer fails the part.
pub const PART_BYTES_MAX: usize = 1024 * 1024;
/// Largest response head of one part, bytes.
const PART_HEAD_BYTES_MAX: usize = 64 * 1024;

/// The merged answer: status, body, and whether every part answered.
pub struct Merged {
    pub status: u16,
    pub body: Vec<u8>,
    pub complete: bool,
}

/// The upstream path of a part: its template over the request path's parameters.
pub fn part_path(part: &AggregatePart, path: &[u8], params: &Params, out: &mut Vec<u8>) {
    out.clear();
    for piece in &part.path {
        match piece {
            TemplatePart::Literal(text) => out.extend_from_slice(text.as_bytes()),
            TemplatePart::Var(Variable::Param(i)) => {
                if let Some(range) = params.get(*i) {
                    out.extend_from_slice(&path[range]);
                }
            }
            // Validation allows only parameters in a part's path.
            TemplatePart::Var(_) => {}
        }
    }
}

/// Runs every part concurrently (`heads[i]` is the complete request head of part `i`) and
/// merges the answers.
pub async fn fan_out(
    worker: &Rc<Worker>,
    view: &Rc<View>,
    parts: &[AggregatePart],
    heads: Vec<Vec<u8>>,
) -> Merged {
    let tasks: Vec<_> = parts
        .iter()
        .zip(heads)
        .map(|(part, head)| {
            let (worker, view) = (worker.clone(), view.clone());
            let (upstream, wait) = (part.upstream, Duration::from_millis(part.timeout_ms));
            coregate_rt::spawn(async move {
                match coregate_rt::time::timeout(wait, call(&worker, &view, upstream, head)).await {
                    Ok(answer) => answer,
                    Err(_) => Err("timed out".to_owned()),
                }
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await);
    }
    merge(parts, &answers)
}

/// Merges the parts' answers: each JSON body under its key, `null` and an `errors` entry for
/// an optional part that failed, 502 when a required one did.
fn merge(parts: &[AggregatePart], answers: &[Result<Vec<u8>, String>]) -> Merged {
    let mut body = Vec::with_capacity(
        answers
            .iter()
            .map(|a| a.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
            + 64,
    );
    let mut errors = Vec::new();
    body.push(b'{');
    for (part, answer) in parts.iter().zip(answers) {
        let _ = write!(body, "{}:", json_string(&part.key));
        let checked = answer.as_ref().map_err(String::clone).and_then(|bytes| {
            serde_json::from_slice::<&RawValue>(bytes)
                .map(|_| bytes)
                .map_err(|_| "answer is not JSON".to_owned())
        });
        match checked {
            Ok(bytes) => body.extend_from_slice(bytes),
            Err(reason) if part.required => {
                let message = format!("required part {} failed: {reason}", part.key);
                let body = format!("{{\"error\":{},\"status\":502}}", json_string(&message));
                return Merged {
                    status: 502,
                    body: body.into_bytes(),
                    complete: false,
                };
            }
            Err(reason) => {
                body.extend_from_slice(b"null");
                errors.push(format!(
                    "{{\"part\":{},\"reason\":{}}}",
                    json_string(&part.key),
                    json_string(&reason)
                ));
            }
        }
        body.push(b',');
    }
    let _ = write!(body, "\"errors\":[{}]}}", errors.join(","));
    Merged {
        status: 200,
        body,
        complete: errors.is_empty(),
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// One call: an endpoint of `upstream`, the request `head`, and the whole answer's body when
/// it is a 2xx.
async fn call(
    worker: &Rc<Worker>,
    view: &Rc<View>,
    upstream: usize,
    head: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let endpoint = worker
        .pick_endpoint(view, upstream, 0, &[])
        .ok_or_else(|| "no endpoint available".to_owned())?;
    let in_flight = InFlight::start(worker, view, upstream, endpoint);
    let config = &view.snapshot.config.upstreams[upstream];
    let addr = config.endpoints[endpoint].address;
    let connect = Duration::from_millis(config.connect_timeout_ms);
    let Ok((mut up, _)) = upstream_connection(
        worker,
        addr,
        view.snapshot.upstream_tls[upstream].as_deref(),
        connect,
        std::time::Instant::now(),
    )
    .await
    else {
        in_flight.fail();
        return Err("connect failed".to_owned());
    };
    let (written, _) = up.write_all(head).await;
    if written.is_err() {
        in_flight.fail();
        return Err("upstream connection failed".to_owned());
    }
    let idle = Duration::from_millis(config.idle_read_timeout_ms);
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut resp = ResponseHead::new();
    let head_len = loop {
        match resp.parse(&buf, Method::Get, PART_HEAD_BYTES_MAX) {
            Ok(Some(n)) if (100..200).contains(&resp.status) => {
                buf.drain(..n);
            }
            Ok(Some(n)) => break n,
            Ok(None) => read_some(&mut up, &mut buf, &worker.timer, idle, &in_flight).await?,
            Err(_) => {
                in_flight.fail();
                return Err("invalid response".to_owned());
            }
        }
    };
    if !(200..300).contains(&resp.status) {
        in_flight.fail();
        return Err(format!("status {}", resp.status));
    }
    buf.drain(..head_len);
    let body = match resp.body {
        ResponseBody::None => Vec::new(),
        ResponseBody::Length(n) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > PART_BYTES_MAX {
                return Err("answer too large".to_owned());
            }
            while buf.len() < n {
                read_some(&mut up, &mut buf, &worker.timer, idle, &in_flight).await?;
            }
            buf.truncate(n);
            buf
        }
        ResponseBody::Chunked => {
            let mut decoder = ChunkedDecoder::new();
            let mut body = Vec::new();
            let mut at = 0;
            loop {
                if at == buf.len() {
                    buf.clear();
                    at = 0;
                    read_some(&mut up, &mut buf, &worker.timer, idle, &in_flight).await?;
                }
                let step = decoder
                    .advance(&buf[at..])
                    .map_err(|_| "invalid chunked answer".to_owned())?;
                body.extend_from_slice(&buf[at + step.data.start..at + step.data.end]);
                at += step.consumed;
                if body.len() > PART_BYTES_MAX {
                    return Err("answer too large".to_owned());
                }
                if step.done {
                    break body;
                }
            }
        }
        ResponseBody::UntilClose => loop {
            match read_more(&mut up, &mut buf, &worker.timer, idle).await {
                Ok(0) => break buf,
                Ok(_) if buf.len() > PART_BYTES_MAX => return Err("answer too large".to_owned()),
                Ok(_) => {}
                Err(_) => return Err("upstream connection failed".to_owned()),
            }
        },
    };
    Ok(body)
}

/// Reads more of a part's answer; an early end or a stall fails the part.
async fn read_some(
    up: &mut crate::stream::Stream,
    buf: &mut Vec<u8>,
    timer: &Timer,
    idle: Duration,
    in_flight: &InFlight,
) -> Result<(), String> {
    match read_more(up, buf, timer, idle).await {
        Ok(0) => {
            in_flight.fail();
            Err("upstream closed early".to_owned())
        }
        Ok(_) => Ok(()),
        Err(ReadFailure::Timeout) => {
            in_flight.fail();
            Err("timed out".to_owned())
        }
        Err(ReadFailure::Io) => {
            in_flight.fail();
            Err("upstream connection failed".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(key: &str, required: bool) -> AggregatePart {
        AggregatePart {
            key: key.to_owned(),
            upstream: 0,
            path: vec![TemplatePart::Literal("/".to_owned())],
            required,
            timeout_ms: 100,
        }
    }

    #[test]
    fn answers_merge_under_their_keys_and_optional_failures_become_null() {
        let parts = [
            part("profile", true),
            part("orders", false),
            part("metrics", false),
        ];
        let answers = [
            Ok(br#"{"id":1}"#.to_vec()),
            Ok(b"[1,2]".to_vec()),
            Err("timed out".to_owned()),
        ];
        let merged = merge(&parts, &answers);
        assert_eq!(merged.status, 200);
        assert!(!merged.complete);
        let value: serde_json::Value = serde_json::from_slice(&merged.body).unwrap();
        assert_eq!(value["profile"]["id"], 1);
        assert_eq!(value["orders"][1], 2);
        assert!(value["metrics"].is_null());
        assert_eq!(value["errors"][0]["part"], "metrics");
        assert_eq!(value["errors"][0]["reason"], "timed out");
    }

    #[test]
    fn a_failed_required_part_or_bad_json_is_502() {
        let parts = [part("profile", true)];
        let merged = merge(&parts, &[Ok(b"not json".to_vec())]);
        assert_eq!(merged.status, 502);
        let value: serde_json::Value = serde_json::from_slice(&merged.body).unwrap();
        assert!(value["error"].as_str().unwrap().contains("profile"));
    }
}
