//! `real-istioctl`: the real istioctl, run as the blog runs it against an
//! external control plane (`ISTIOCTL_XDS_ADDRESS=<proxy>
//! ISTIOCTL_ISTIONAMESPACE=<ns> ISTIOCTL_PREFER_EXPERIMENTAL=true istioctl
//! proxy-status --context <remote>`), wherever a topology has it. Its table
//! through the proxy has `<external>` in every ISTIOD cell and exactly the
//! proxies of the replicas asked directly; `proxy-conformance ps` for the same
//! istioctl version through the same proxy prints the same bytes (table,
//! `-v 1`, `-o json`, `-o yaml`; nonces and row order aside, which istiod
//! leaves free); `istioctl proxy-status <pod>.<ns> --file <Envoy's dump>`
//! says Clusters, Listeners and Routes Match for every real Envoy (istiod's
//! config_dump through the proxy); `istioctl version` through the proxy
//! reports the control plane's version.

use crate::suite::control_plane::RealIstioctl;
use crate::suite::prelude::*;
use std::collections::BTreeSet;
use std::time::Duration;

crate::check! {
    id: "real-istioctl",
    profile: Profile::Core,
    description: "the real istioctl through the proxy, as the blog runs it: <external> in every ISTIOD cell, exactly the replicas' proxies, the same bytes as `proxy-conformance ps` for its version (table, -v 1, -o json, -o yaml), `proxy-status <pod>` matching each real Envoy's config dump, and `istioctl version`",
    features: &[],
    needs: &[Capability::RealIstioctl],
    scenarios: &["three-replicas"],
}

/// istioctl's own default `--timeout` is 30 s; a hung istioctl is a failure.
const ISTIOCTL_BOUND: Duration = Duration::from_secs(45);
/// `-v 1` prints ages in seconds: asked again when a second ticked between the two.
const AGE_RETRIES: usize = 5;

async fn run(ctx: &Ctx) -> Checked {
    let Some(ic) = ctx.control_plane.real_istioctl() else {
        return Err(skip(
            "the topology has no real istioctl binary (bash ci/real-istio-build.sh istioctl)",
        ));
    };
    let token_dir = tempfile::tempdir().map_err(|e| format!("bench: temporary folder: {e}"))?;
    let token_file = token_dir.path().join("token");
    if let Some(token) = ctx.istioctl_token() {
        std::fs::write(&token_file, token).map_err(|e| format!("bench: token file: {e}"))?;
    }
    let mut problems = Vec::new();

    let table = istioctl(ctx, &ic, &["proxy-status"]).await?;
    check_table(ctx, &table, &mut problems).await?;
    let ps_table = ps(ctx, &ic, &token_file, &[]).await?;
    if table != ps_table {
        problems.push(format!(
            "the default table differs from `proxy-conformance ps --istioctl-version {}`:\nistioctl:\n{table}\nps:\n{ps_table}",
            ic.version
        ));
    }

    let mut verbose = (String::new(), String::new());
    for _ in 0..AGE_RETRIES {
        verbose = (
            istioctl(ctx, &ic, &["proxy-status", "-v", "1"]).await?,
            ps(ctx, &ic, &token_file, &["-v", "1"]).await?,
        );
        if verbose.0 == verbose.1 {
            break;
        }
    }
    if verbose.0 != verbose.1 {
        // In a large mesh a second ticks between the two for some row
        // almost every time; the ages' source (lastUpdated) is compared
        // exactly in -o json and -o yaml below.
        if without_ages(&verbose.0) == without_ages(&verbose.1) {
            ctx.note(format!(
                "-v 1: the same but for ages, {AGE_RETRIES} times (a second ticked between the two runs; {} rows)",
                verbose.0.lines().count().saturating_sub(1)
            ));
        } else {
            problems.push(format!(
                "-v 1 differs:\nistioctl:\n{}\nps:\n{}",
                verbose.0, verbose.1
            ));
        }
    }

    for format in ["json", "yaml"] {
        let real = istioctl(ctx, &ic, &["proxy-status", "-o", format]).await?;
        let ours = ps(ctx, &ic, &token_file, &["-o", format]).await?;
        match (normalised(&real), normalised(&ours)) {
            (Ok(a), Ok(b)) if a == b => {}
            (Ok(_), Ok(_)) => problems.push(format!(
                "-o {format} differs (nonce and row order aside):\nistioctl:\n{real}\nps:\n{ours}"
            )),
            (Err(e), _) => problems.push(format!("istioctl -o {format} is not {format}: {e}")),
            (_, Err(e)) => problems.push(format!("ps -o {format} is not {format}: {e}")),
        }
    }

    // `proxy-status <pod>.<ns>`: istiod's config_dump through the proxy,
    // compared by istioctl with the real Envoy's own (`--file`, what
    // istioctl would read through the pod's admin port).
    for (name, admin) in &ic.envoys {
        let dump = http_get(*admin, "/config_dump?include_eds")
            .await
            .map_err(|e| fail(format!("bench: Envoy of {name}: {e}")))?;
        let file = token_dir.path().join("config_dump.json");
        std::fs::write(&file, dump).map_err(|e| format!("bench: {e}"))?;
        let path = file.display().to_string();
        let out = istioctl(ctx, &ic, &["proxy-status", name, "--file", &path]).await?;
        for part in ["Clusters Match", "Listeners Match", "Routes Match"] {
            if !out.contains(part) {
                problems.push(format!(
                    "istioctl proxy-status {name} (istiod's config_dump through the proxy against the Envoy's): no {part:?} in:\n{out}"
                ));
            }
        }
    }

    let version = istioctl(ctx, &ic, &["version"]).await?;
    let versions: BTreeSet<String> = ctx.replicas().iter().map(|r| r.version_text()).collect();
    if !versions.iter().any(|v| version.contains(v.as_str())) {
        problems.push(format!(
            "`istioctl version` through the proxy does not report a replica's version ({}):\n{version}",
            few(&versions)
        ));
    }
    ctx.note(format!(
        "istioctl {} (real) through the proxy: {} rows, every ISTIOD <external>; ps printed the same; config_dump matched {} real Envoys",
        ic.version,
        table.lines().count().saturating_sub(1),
        ic.envoys.len()
    ));
    verdict(problems)
}

/// Every ISTIOD cell `<external>`; the rows exactly the replicas' proxies.
async fn check_table(ctx: &Ctx, table: &str, problems: &mut Vec<String>) -> Checked {
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let Some(column) = header.iter().position(|c| *c == "ISTIOD") else {
        return Err(fail(format!(
            "no ISTIOD column in istioctl's table:\n{table}"
        )));
    };
    let mut names = BTreeSet::new();
    for row in lines.filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        match cells.get(column) {
            Some(&"<external>") => {}
            other => problems.push(format!(
                "ISTIOD is {:?}, not <external>, in: {row}",
                other.copied().unwrap_or_default()
            )),
        }
        names.insert(cells.first().copied().unwrap_or_default().to_string());
    }
    // Node ids are `type~ip~pod.ns~domain`; istioctl's NAME is `pod.ns`.
    let expected: BTreeSet<String> = ctx
        .expected_ids()
        .await?
        .iter()
        .map(|id| id.split('~').nth(2).unwrap_or(id).to_string())
        .collect();
    if names != expected {
        problems.push(format!(
            "istioctl's rows are not the replicas' proxies: missing {}, unexpected {}",
            few(expected.difference(&names)),
            few(names.difference(&expected))
        ));
    }
    Ok(())
}

/// Runs the real istioctl through the proxy, as the blog does: the three
/// variables and `--context`; `--kubeconfig` because the bench's is not
/// the user's. Nothing else: without `--plaintext`/`--cert-dir` istioctl
/// mints a token on the context and dials TLS without verifying the server
/// (`1.30.0:istioctl/pkg/xds/client.go`, `DialOptions`).
async fn istioctl(ctx: &Ctx, ic: &RealIstioctl, args: &[&str]) -> Result<String, Verdict> {
    let mut cmd = tokio::process::Command::new(&ic.binary);
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(&ic.kubeconfig)
        .args(["--context", &ic.context])
        .env("ISTIOCTL_XDS_ADDRESS", &ctx.proxy.address)
        .env("ISTIOCTL_ISTIONAMESPACE", ctx.istio_namespace())
        .env("ISTIOCTL_PREFER_EXPERIMENTAL", "true")
        .kill_on_drop(true);
    if ctx.proxy.plaintext {
        cmd.arg("--plaintext");
    }
    let what = format!("istioctl {}", args.join(" "));
    let out = tokio::time::timeout(ISTIOCTL_BOUND, cmd.output())
        .await
        .map_err(|_| fail(format!("{what} did not finish within {ISTIOCTL_BOUND:?}")))?
        .map_err(|e| fail(format!("bench: cannot run {}: {e}", ic.binary.display())))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{what} through the proxy failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `proxy-conformance ps` as that istioctl version, through the proxy, with
/// the token istioctl would mint.
async fn ps(
    ctx: &Ctx,
    ic: &RealIstioctl,
    token_file: &std::path::Path,
    extra: &[&str],
) -> Result<String, Verdict> {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Ps {
        #[command(flatten)]
        args: crate::ps::PsArgs,
    }
    let version = ic.version.to_string();
    let mut argv = vec![
        "ps",
        "--xds-address",
        &ctx.proxy.address,
        "-i",
        ctx.istio_namespace(),
        "--istioctl-version",
        &version,
    ];
    let token = token_file.display().to_string();
    if ctx.proxy.plaintext {
        argv.push("--plaintext");
    } else {
        argv.extend(["--token-file", &token]);
    }
    argv.extend(extra);
    let args = Ps::try_parse_from(&argv)
        .map_err(|e| fail(format!("bench: ps arguments {argv:?}: {e}")))?
        .args;
    crate::ps::run(&args)
        .await
        .map_err(|e| fail(format!("proxy-conformance ps {}: {e:#}", extra.join(" "))))
}

/// The body of a plain HTTP/1.1 GET (an Envoy's admin port, which refuses
/// HTTP/1.0), the connection closed after it; chunked bodies joined.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
        let mut all = Vec::new();
        s.read_to_end(&mut all)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let at = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("{addr}{path}: not an HTTP answer"))?;
        if !all.starts_with(b"HTTP/1.1 200") && !all.starts_with(b"HTTP/1.0 200") {
            return Err(format!(
                "{addr}{path}: {}",
                String::from_utf8_lossy(&all[..at.min(40)])
            ));
        }
        let head = String::from_utf8_lossy(&all[..at]).to_ascii_lowercase();
        let body = all.split_off(at + 4);
        if head.contains("transfer-encoding: chunked") {
            dechunk(&body).ok_or_else(|| format!("{addr}{path}: a broken chunked body"))
        } else {
            Ok(body)
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}{path}: no answer within 10s")))
}

/// The data of a chunked HTTP/1.1 body.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// `-v 1`'s table with every age (`SYNCED (3s)`) cut to its status.
fn without_ages(table: &str) -> String {
    let mut out = String::with_capacity(table.len());
    let mut rest = table;
    while let Some(open) = rest.find(" (") {
        let after = &rest[open + 2..];
        let age = after.find("s)").filter(|end| {
            after[..*end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
        });
        match age {
            Some(end) => {
                out.push_str(&rest[..open]);
                out.push_str(" (age)");
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[..open + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    // Columns are padded to the longest cell: an age's width is free too.
    out.split('\n')
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// JSON or YAML without what istiod and the proxy leave free: the nonce and
/// the version_info (new with every answer: istiod's `<push>/<uuid>` nonce,
/// a proxy's own version for the merged answer) and the order of the
/// ClientConfigs (map order in istiod).
fn normalised(text: &str) -> Result<serde_json::Value, String> {
    let mut v: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    if let Some(o) = v.as_object_mut() {
        o.remove("nonce");
        o.remove("versionInfo");
        if let Some(serde_json::Value::Array(rows)) = o.get_mut("resources") {
            rows.sort_by_key(|r| r["node"]["id"].as_str().unwrap_or_default().to_string());
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(dechunk(b"5\r\nab"), None);
    }

    #[test]
    fn ages_are_cut() {
        assert_eq!(
            without_ages("a  SYNCED (3s)    x\nb  SYNCED (12m5s)  STALE (1h2m3s)"),
            without_ages("a  SYNCED (4s)  x\nb  SYNCED (12m6s)  STALE (1h2m3s)")
        );
        assert_ne!(without_ages("a SYNCED (3s)"), without_ages("a STALE (3s)"));
    }

    #[test]
    fn json_and_yaml_normalise_alike() {
        let json = r#"{"nonce":"1/abc","resources":[{"node":{"id":"b"}},{"node":{"id":"a"}}]}"#;
        let yaml = "nonce: 2/def\nresources:\n- node:\n    id: a\n- node:\n    id: b\n";
        assert_eq!(normalised(json), normalised(yaml));
        assert!(normalised("{").is_err());
    }
}
