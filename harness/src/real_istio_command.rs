//! `proxy-conformance real-istio up | walkthrough | down`: the real-istio
//! topology for people. `up` starts it in the background (a `serve` process
//! of its own, detached) with the reference proxy (or `--proxy-cmd`) in front
//! of the replicas, and prints what to use: the kubeconfig, the replicas, the
//! proxy's address and the exact istioctl command. `walkthrough` runs the
//! blog's `proxy-status` through the proxy; `down` stops it all.

use crate::topology::real_istio::{RealIstio, WorldOptions, topology, world};
use crate::topology::{ProxyMode, ProxyUnderTest};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct RealIstioArgs {
    #[command(subcommand)]
    pub command: RealIstioCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RealIstioCommand {
    /// Start the topology in the background (API servers, istiod replicas,
    /// the mesh, the proxy) and print how to reach it.
    Up(UpArgs),
    /// Run the blog's `istioctl proxy-status` through the proxy and print its table.
    Walkthrough(StateArgs),
    /// Stop everything `up` started.
    Down(StateArgs),
    /// (internal) What `up` runs in the background.
    #[command(hide = true)]
    Serve(UpArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// Where `up` keeps the topology's files and its state.
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".proxy-conformance/real-istio"
    )]
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// istiod replicas.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub replicas: u16,
    /// Light sidecars beyond the blog's three pods.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=5000))]
    pub sidecars: u16,
    /// The proxy to put in front of the replicas, instead of the bundled
    /// reference (the placeholders of `run --proxy-cmd`, plus {kubeconfig},
    /// {context} and {server_name}).
    #[arg(long, value_name = "CMD")]
    pub proxy_cmd: Option<String>,
    /// How long `up` waits for everything to be ready.
    #[arg(long, value_name = "DURATION", default_value = "180s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// What `serve` writes once ready, and the other commands read.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct UpState {
    pub pid: u32,
    pub kubeconfig: PathBuf,
    pub istio_namespace: String,
    pub remote_context: String,
    pub proxy: String,
    pub replicas: Vec<(String, String)>,
    pub istioctl: Option<PathBuf>,
    pub started_in_ms: u64,
    pub first_answer_ms: u64,
    pub rss_mib: u64,
}

const STATE_FILE: &str = "up.yaml";

impl UpState {
    /// The exact command, as the blog runs it.
    pub fn istioctl_command(&self) -> String {
        format!(
            "ISTIOCTL_XDS_ADDRESS={} ISTIOCTL_ISTIONAMESPACE={} ISTIOCTL_PREFER_EXPERIMENTAL=true {} proxy-status --kubeconfig {} --context {}",
            self.proxy,
            self.istio_namespace,
            self.istioctl
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "istioctl".into()),
            self.kubeconfig.display(),
            self.remote_context
        )
    }

    fn read(dir: &Path) -> anyhow::Result<UpState> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no running real-istio topology in {} (start one with `proxy-conformance real-istio up`)",
                dir.display()
            )
        })?;
        serde_yaml_ng::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }
}

pub async fn main(args: RealIstioArgs) -> anyhow::Result<i32> {
    match args.command {
        RealIstioCommand::Up(a) => up(a).await,
        RealIstioCommand::Serve(a) => serve(a).await,
        RealIstioCommand::Walkthrough(a) => walkthrough(&a).await,
        RealIstioCommand::Down(a) => down(&a).await,
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

async fn up(a: UpArgs) -> anyhow::Result<i32> {
    let dir = &a.state.state_dir;
    if let Ok(s) = UpState::read(dir)
        && pid_alive(s.pid)
    {
        bail!(
            "a real-istio topology already runs from {} (pid {}): `proxy-conformance real-istio down` first",
            dir.display(),
            s.pid
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join(STATE_FILE));
    let log_path = dir.join("serve.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("where is this program")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["real-istio", "serve", "--state-dir"])
        .arg(dir)
        .args(["--replicas", &a.replicas.to_string()])
        .args(["--sidecars", &a.sidecars.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(c) = &a.proxy_cmd {
        cmd.args(["--proxy-cmd", c]);
    }
    // Its own process group: it outlives this command and the terminal's Ctrl-C.
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let mut child = cmd.spawn().context("start the background process")?;
    let started = Instant::now();
    let mut shown = 0;
    loop {
        // Progress: the background process's lines as they come.
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        for line in text.lines().skip(shown) {
            println!("{line}");
        }
        shown = text.lines().count();
        if let Ok(state) = UpState::read(dir) {
            print_state(&state, dir);
            return Ok(0);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the real-istio topology did not come up ({status}); its log: {}",
                log_path.display()
            );
        }
        if started.elapsed() > a.timeout {
            let _ = child.kill();
            bail!(
                "the real-istio topology was not up within {:?}; its log: {}",
                a.timeout,
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_state(s: &UpState, dir: &Path) {
    println!(
        "\nreal-istio is up (pid {}): started in {:.1}s, first full answer through the proxy {:.1}s after start; RSS {} MiB",
        s.pid,
        s.started_in_ms as f64 / 1000.0,
        s.first_answer_ms as f64 / 1000.0,
        s.rss_mib
    );
    println!(
        "  kubeconfig: {} (contexts external, remote)",
        s.kubeconfig.display()
    );
    for (name, addr) in &s.replicas {
        println!("  istiod {name} at {addr}");
    }
    println!("  proxy: {}", s.proxy);
    println!("\n  {}\n", s.istioctl_command());
    println!(
        "walkthrough: proxy-conformance real-istio walkthrough --state-dir {d}\nstop:        proxy-conformance real-istio down --state-dir {d}",
        d = dir.display()
    );
}

async fn serve(a: UpArgs) -> anyhow::Result<i32> {
    let dir = std::path::absolute(&a.state.state_dir)?;
    let options = WorldOptions {
        replicas: usize::from(a.replicas),
        extra_sidecars: usize::from(a.sidecars),
        dir: Some(dir.join("world")),
        real_sidecars: true,
    };
    let say = |line: &str| println!("real-istio: {line}");
    let started = Instant::now();
    let world = RealIstio::start(&options, &say).await?;
    let world = std::sync::Arc::new(world);
    let proxy = ProxyUnderTest {
        mode: match &a.proxy_cmd {
            Some(c) => ProxyMode::Command(c.clone()),
            None => ProxyMode::Bundled,
        },
        plaintext: false,
        ready_timeout: Duration::from_secs(30),
        discovery_refresh: Duration::from_secs(1),
        families: vec![],
        snapshots: Default::default(),
    };
    let started_proxy = topology::start_proxy(&proxy, &world, None).await?;
    let address = started_proxy.address.clone();
    say(&format!("the proxy listens on {address}"));
    let first = first_full_answer(&world, &address).await?;
    let state = UpState {
        pid: std::process::id(),
        kubeconfig: world.kubeconfig.clone(),
        istio_namespace: crate::topology::real_istio::objects::ISTIO_NAMESPACE.into(),
        remote_context: world::REMOTE.into(),
        proxy: address,
        replicas: world
            .replicas()
            .await
            .into_iter()
            .map(|(n, a)| (n, a.to_string()))
            .collect(),
        istioctl: crate::topology::real_istio::binaries::Binaries::find(&["istioctl"])
            .ok()
            .map(|b| b.path("istioctl")),
        started_in_ms: world.uptime().as_millis() as u64,
        first_answer_ms: first.duration_since(started).as_millis() as u64,
        rss_mib: world.rss_bytes().await / (1 << 20),
    };
    let text = serde_yaml_ng::to_string(&state)?;
    let tmp = dir.join("up.yaml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(STATE_FILE))?;
    say("ready");
    // Until `down` (SIGTERM) or Ctrl-C.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    say("stopping");
    let _ = std::fs::remove_file(dir.join(STATE_FILE));
    if let Some(p) = started_proxy.process {
        p.stop().await;
    }
    for t in started_proxy.teardown {
        t.teardown().await;
    }
    if let Ok(w) = std::sync::Arc::try_unwrap(world) {
        w.stop().await;
    }
    let _ = std::fs::remove_dir_all(dir.join("world"));
    say("stopped");
    Ok(0)
}

/// Asks the proxy (as istioctl, with the istio namespace's token) until its
/// answer lists the whole mesh; returns when it did.
async fn first_full_answer(world: &RealIstio, address: &str) -> anyhow::Result<Instant> {
    let remote = world.remote.client()?;
    let token = cluster::kubeops::token_request(
        &remote,
        crate::topology::real_istio::objects::ISTIO_NAMESPACE,
        "default",
        crate::topology::cluster::AUDIENCE,
        Duration::from_secs(600),
    )
    .await?;
    let want = world.sidecars().await;
    let opts = crate::client::ClientOptions {
        credentials: crate::client::Credentials::InsecureTlsWithToken { token: Some(token) },
        istio_namespace: crate::topology::real_istio::objects::ISTIO_NAMESPACE.into(),
        timeout: Duration::from_secs(5),
        ..crate::client::ClientOptions::plaintext(address.to_string())
    };
    let begun = Instant::now();
    loop {
        let last = match crate::client::fetch(&opts, proto::type_url::SYNCZ, &[]).await {
            Ok(resp) if resp.resources.len() >= want => return Ok(Instant::now()),
            Ok(resp) => format!("{} of {want} proxies", resp.resources.len()),
            Err(e) => e.to_string(),
        };
        if begun.elapsed() > Duration::from_secs(60) {
            bail!("the proxy at {address} gave no full answer within 60s (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn walkthrough(a: &StateArgs) -> anyhow::Result<i32> {
    let s = UpState::read(&a.state_dir)?;
    let Some(istioctl) = &s.istioctl else {
        bail!("no istioctl binary: build it with `bash ci/real-istio-build.sh istioctl`");
    };
    println!("$ {}", s.istioctl_command());
    let out = tokio::process::Command::new(istioctl)
        .args(["proxy-status", "--kubeconfig"])
        .arg(&s.kubeconfig)
        .args(["--context", &s.remote_context])
        .env("ISTIOCTL_XDS_ADDRESS", &s.proxy)
        .env("ISTIOCTL_ISTIONAMESPACE", &s.istio_namespace)
        .env("ISTIOCTL_PREFER_EXPERIMENTAL", "true")
        .output()
        .await
        .context("run istioctl")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(if out.status.success() { 0 } else { 1 })
}

async fn down(a: &StateArgs) -> anyhow::Result<i32> {
    let s = UpState::read(&a.state_dir)?;
    let pid = i32::try_from(s.pid).context("pid")?;
    // SAFETY: kill(2) with a pid and a signal; no memory is touched.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let begun = Instant::now();
    while pid_alive(s.pid) {
        if begun.elapsed() > Duration::from_secs(30) {
            // SAFETY: as above; its process group holds what it started.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            bail!(
                "pid {} did not stop within 30s: killed its process group",
                s.pid
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_file(a.state_dir.join(STATE_FILE));
    println!("real-istio stopped (pid {})", s.pid);
    Ok(0)
}
