//! `bourse serve` as an operator runs it (the real binary): production is
//! not the demo, the operator token's grant and the partition routing come
//! from the configuration, `config check` never prints a secret and refuses
//! weak tokens and capacities the machine cannot hold, and an idle server
//! does not burn a core it was not given.

mod support;

use gateway::client::{limit, Client, ClientConfig, Reply};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use support::BOURSE;

/// A running `bourse serve` whose standard output is read line by line.
struct Serve {
    child: Child,
    lines: Receiver<String>,
    banner: Vec<String>,
}

impl Serve {
    /// Starts `serve` on an ephemeral port in `dir` with `args` (tables not
    /// prefaulted), and reads its banner (up to the `try:` line).
    fn start(dir: &Path, args: &[&str]) -> Serve {
        let mut child = support::spawn_piped(
            support::serve(dir, &[])
                // Several servers start at once here: do not touch 1 GiB each.
                .args(["--set", "pipeline.prefault=false"])
                .args(args),
        );
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut s = Serve {
            child,
            lines,
            banner: Vec::new(),
        };
        loop {
            match s.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(l) => {
                    let done = l.contains("try:");
                    s.banner.push(l);
                    if done {
                        break;
                    }
                }
                Err(_) => {
                    let err = s.stop();
                    panic!("no banner: {:?}\n{err}", s.banner);
                }
            }
        }
        s
    }

    fn addr(&self) -> std::net::SocketAddr {
        support::addr_of(&self.banner[0]).parse().unwrap()
    }

    fn text(&self) -> String {
        self.banner.join("\n")
    }

    /// SIGTERM, wait (15 s at most); returns standard error.
    fn stop(&mut self) -> String {
        let _ = support::signal(&self.child, "-TERM");
        let status = support::wait_since(&mut self.child, Instant::now(), Duration::from_secs(15))
            .expect("serve did not stop");
        let err = support::read_stderr(&mut self.child);
        assert!(status.success(), "exit {status:?}\n{err}");
        err
    }
}

/// A failed test must not leave a server running (a pinned one spins).
impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `bourse journal dump DIR` as (cmd, id) pairs of instrument and account commands.
fn journaled(dir: &Path) -> Vec<(String, u64)> {
    let out = Command::new(BOURSE)
        .args(["journal", "dump"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let cmd = v["cmd"].as_str()?.to_string();
            let id = v["id"].as_u64()?;
            matches!(cmd.as_str(), "instrument" | "open_account").then_some((cmd, id))
        })
        .collect()
}

fn config_file(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("bourse.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn plain_serve_creates_no_demo_set() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Serve::start(&data, &["--metrics", "0.0.0.0:0", "--durability", "async"]);
    assert!(!s.text().contains("demo"), "{}", s.text());
    let err = s.stop();
    assert!(
        err.contains("WARN") && err.contains("beyond loopback"),
        "metrics on 0.0.0.0 are warned about: {err}"
    );
    assert_eq!(journaled(&data.join("p0")), vec![], "no demo commands");
    assert!(!data.join("instruments.json").exists());
}

/// `serve --demo` in `data` over two partitions, instrument 2 on
/// partition 0 and the rest on partition 1, with journal `durability`.
fn two_partition_demo(dir: &Path, data: &Path, durability: &str) -> Serve {
    let cfg = config_file(
        dir,
        &format!(
            "[pipeline]\npartitions = 2\ndurability = \"{durability}\"\n\
             [partitions]\ndefault = 1\ninstruments = {{ \"2\" = 0 }}\n"
        ),
    );
    Serve::start(
        data,
        &["--no-metrics", "--demo", "--config", cfg.to_str().unwrap()],
    )
}

#[test]
fn serve_routes_with_the_configured_partition_map() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = two_partition_demo(dir.path(), &data, "async");
    assert!(s.text().contains("demo instruments"), "{}", s.text());
    s.stop();
    let instruments = |p: &str| -> Vec<u64> {
        journaled(&data.join(p))
            .into_iter()
            .filter(|(c, _)| c == "instrument")
            .map(|(_, id)| id)
            .collect()
    };
    assert_eq!(instruments("p0"), vec![2], "[partitions] instruments");
    assert_eq!(instruments("p1"), vec![1, 3], "[partitions] default");
    let accounts = journaled(&data.join("p1"))
        .iter()
        .filter(|(c, _)| c == "open_account")
        .count();
    assert_eq!(accounts, 8, "accounts follow the default partition");
}

/// The replies to `request`, until one ends it (a report whose request it
/// is), then 300 ms more for any second answer the test must not see.
async fn answers_to(c: &mut Client, request: u64) -> Vec<(u8, String)> {
    let mut got = Vec::new();
    let mut until = Instant::now() + Duration::from_secs(5);
    while let Ok(r) = tokio::time::timeout_at(until.into(), c.next()).await {
        if let Reply::Report(e) = r.unwrap().expect("stream open") {
            if e.request == request {
                got.push((e.exec_type, gateway::client::reject_name(e.reject_code)));
                until = until.min(Instant::now() + Duration::from_millis(300));
            }
        }
    }
    got
}

#[test]
fn cancel_by_client_order_id_finds_the_order_on_whichever_partition_holds_it() {
    use gateway::wire::exec_type;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = two_partition_demo(dir.path(), &data, "none");
    let id = gateway::identity::load_client_identity(&data).unwrap();
    let ccfg = ClientConfig::new(s.addr(), id.cert_der, id.operator_token.unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let mut c = Client::connect(&ccfg).await.unwrap();
        // Owner 1 rests coid 77 on instrument 2 (partition 0) and coid 78
        // on instrument 1 (partition 1).
        for (inst, price, coid) in [(2, 2_500, 77), (1, 50_000, 78)] {
            let req = c.order(limit(1, inst, engine::Side::Buy, price, 1, coid));
            c.flush().await.unwrap();
            let a = answers_to(&mut c, req).await;
            assert_eq!(a, vec![(exec_type::NEW, "none".to_string())], "coid {coid}");
        }
        let mut got = Vec::new();
        for coid in [78, 77, 77, 99] {
            let req = c.cancel_by_client_id(1, coid);
            c.flush().await.unwrap();
            got.push(answers_to(&mut c, req).await);
        }
        c.close().await;
        got
    });
    s.stop();
    let canceled = vec![(exec_type::CANCELED, "none".to_string())];
    let unknown = vec![(exec_type::REJECTED, "unknown_order".to_string())];
    // One answer each: the partition that holds the order cancels it, and
    // an order no partition holds gets one `unknown_order`, not one per
    // partition.
    assert_eq!(
        got,
        vec![canceled.clone(), canceled, unknown.clone(), unknown]
    );
}

#[test]
fn operator_token_grant_comes_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config_file(
        dir.path(),
        "[auth]\noperator_owners = [5]\noperator_perms = [\"trade\", \"read\"]\n",
    );
    let cfg = cfg.to_str().unwrap();
    let mut s = Serve::start(
        &data,
        &["--no-metrics", "--durability", "none", "--config", cfg],
    );
    let id = gateway::identity::load_client_identity(&data).unwrap();
    let ccfg = ClientConfig::new(s.addr(), id.cert_der, id.operator_token.unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // (owner, instrument) → the reject reason of the order.
    let got: Vec<(u64, String)> = rt.block_on(async {
        let mut c = Client::connect(&ccfg).await.unwrap();
        let mut got = Vec::new();
        for owner in [1u64, 5] {
            let req = c.order(limit(owner, 1, engine::Side::Buy, 100, 1, owner));
            c.flush().await.unwrap();
            loop {
                let r = tokio::time::timeout(Duration::from_secs(5), c.next())
                    .await
                    .expect("a reply")
                    .unwrap()
                    .expect("stream open");
                if let Reply::Report(e) = r {
                    if e.request == req {
                        got.push((owner, gateway::client::reject_name(e.reject_code)));
                        break;
                    }
                }
            }
        }
        c.close().await;
        got
    });
    s.stop();
    assert_eq!(
        got,
        vec![
            (1, "not_authorized".to_string()),
            (5, "unknown_instrument".to_string())
        ]
    );
}

fn bourse(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BOURSE)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_masks_tokens_and_refuses_weak_ones() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "desk-7-secret-0123456789";
    let entry = |t: &str, owners: &str| {
        format!("{{ token = \"{t}\", owners = [{owners}], perms = [\"trade\"] }}")
    };
    // (tokens, expected exit, text expected in the output)
    let cases = [
        (entry(secret, "7"), 0, "(24 chars)"),
        (entry("short-secret", "7"), 2, "auth.tokens[0]"),
        (
            format!("{}, {}", entry(secret, "7"), entry(secret, "8")),
            2,
            "auth.tokens[1]",
        ),
        (
            entry(secret, "1, 2, 3, 4, 5, 6, 7, 8, 9"),
            2,
            "auth.tokens[0]",
        ),
    ];
    for (tokens, code, want) in cases {
        let f = config_file(dir.path(), &format!("[auth]\ntokens = [{tokens}]\n"));
        let (rc, out, err) = bourse(
            &["config", "check", "--config", f.to_str().unwrap()],
            &[("BOURSE_TOKEN", "client-side-token-xyz")],
        );
        assert_eq!(rc, code, "{tokens}\n{out}\n{err}");
        let all = format!("{out}{err}");
        assert!(all.contains(want), "{want} in {all}");
        assert!(!all.contains("0123456789"), "the secret is printed: {all}");
        assert!(
            !all.contains("short-secret"),
            "the secret is printed: {all}"
        );
    }
}

#[test]
fn config_check_refuses_capacities_the_machine_cannot_hold() {
    let (rc, out, err) = bourse(
        &[
            "config",
            "check",
            "--set",
            "engine.orders_max=4000000000",
            "--set",
            "engine.client_order_ids_max=4000000000",
        ],
        &[],
    );
    assert_eq!(rc, 2, "{out}\n{err}");
    assert!(err.contains("engine memory estimate"), "{err}");
    assert!(err.contains("GiB"), "{err}");
    let (rc, _, err) = bourse(&["config", "check"], &[]);
    assert_eq!(rc, 0, "the defaults fit: {err}");
}

/// CPU time (user + system, clock ticks) of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of stat(5), counted after the command name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Most of one core an unpinned idle `serve` may use: its engine and journal
/// threads park (sleeps of at most 50 µs), a spinning one would use all of it.
const IDLE_SHARE_MAX: f64 = 0.5;

/// Share of one core an idle `serve` used over 2 s.
fn idle_share(s: &Serve) -> f64 {
    std::thread::sleep(Duration::from_millis(500));
    let (a, t0) = (cpu_ticks(s.child.id()), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let b = cpu_ticks(s.child.id());
    (b - a) as f64 / 100.0 / t0.elapsed().as_secs_f64()
}

#[test]
#[cfg(target_os = "linux")]
fn an_idle_server_burns_no_core_it_was_not_given() {
    // Unpinned: a small share of one core.
    let dir = tempfile::tempdir().unwrap();
    let mut s = Serve::start(dir.path(), &["--no-metrics", "--no-pin"]);
    let share = idle_share(&s);
    assert!(s.text().contains("engine threads unpinned"), "{}", s.text());
    s.stop();
    // A spinning thread shows as ~1.0; parking threads measured 0.10-0.30
    // here, more on a loaded 2-core machine: 0.5 tells the two apart.
    assert!(
        share < IDLE_SHARE_MAX,
        "idle unpinned serve used {share:.2} of a core"
    );
    // Defaults: either the banner names the core given to a spinning
    // engine thread, or the server idles as cheaply.
    let dir = tempfile::tempdir().unwrap();
    let mut s = Serve::start(dir.path(), &["--no-metrics"]);
    let share = idle_share(&s);
    let text = s.text();
    s.stop();
    if let Some(l) = text.lines().find(|l| l.contains("pinned to core")) {
        assert!(l.contains("spin"), "{l}");
        assert!(share < 1.2, "one pinned core at most: {share:.2}");
    } else {
        assert!(text.contains("engine threads unpinned"), "{text}");
        assert!(
            share < IDLE_SHARE_MAX,
            "idle serve used {share:.2} of a core"
        );
    }
}
