//! The cluster recipes under deploy/: the Kubernetes manifests parse and agree with each other
//! (the Indexed Job's size and its `--shard`, the Service and the server's port, the scenario
//! they carry), and the Slurm scripts run a real federated run on loopback through a stub
//! `srun` that records each command and then runs it. Also `--shard`'s slices.

use super::federated::{free_port, scenario_text};
use distillery::fed::transport::ids::Shard;
use distillery::report::records::Summary;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn shards_cover_every_client_once() {
    for clients in [1, 7, 10, 4000, 10_001] {
        for n in [1, 3, 4, 16] {
            let slices: Vec<Vec<usize>> = (0..n).map(|k| Shard { k, n }.ids(clients)).collect();
            let all: Vec<usize> = slices.concat();
            assert_eq!(all, (0..clients).collect::<Vec<_>>(), "{clients} in {n}");
            let sizes: Vec<usize> = slices.iter().map(Vec::len).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "{clients} in {n}: {sizes:?}");
        }
    }
    assert_eq!(Shard::parse(" 2/4 "), Ok(Shard { k: 2, n: 4 }));
    for bad in ["4/4", "1", "a/2", "1/0", "-1/3"] {
        let e = Shard::parse(bad).unwrap_err();
        assert!(e.contains("K/N"), "{bad}: {e}");
    }
}

/// Every document of every manifest in deploy/kubernetes/, by `kind/name`.
fn manifests() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for d in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let key = format!(
                "{}/{}",
                v["kind"].as_str().unwrap(),
                v["metadata"]["name"].as_str().unwrap()
            );
            docs.push((key, v));
        }
    }
    docs
}

fn doc<'a>(docs: &'a [(String, Value)], key: &str) -> &'a Value {
    &docs
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .1
}

fn args(job: &Value) -> Vec<String> {
    job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The value after flag `flag` in `args`.
fn after<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    &args[i + 1]
}

#[test]
fn the_kubernetes_manifests_agree_with_each_other() {
    let docs = manifests();
    let clients = doc(&docs, "Job/distillery-clients");
    let spec = &clients["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let a = args(clients);
    let shard = after(&a, "--shard");
    let n: u64 = shard
        .strip_prefix("$(JOB_COMPLETION_INDEX)/")
        .expect(shard)
        .parse()
        .unwrap();
    assert_eq!(
        spec["completions"].as_u64(),
        Some(n),
        "completions = the shard count"
    );
    assert_eq!(
        spec["parallelism"].as_u64(),
        Some(n),
        "parallelism = the shard count"
    );
    // The clients reach the Service, which selects the server pod on the server's port.
    let server = doc(&docs, "Job/distillery-server");
    let service = doc(&docs, "Service/distillery-server");
    let s = args(server);
    let port = after(&s, "--addr").rsplit_once(':').unwrap().1.to_string();
    let p = &service["spec"]["ports"][0];
    assert_eq!(p["port"].as_u64().unwrap().to_string(), port);
    assert_eq!(p["targetPort"].as_u64().unwrap().to_string(), port);
    assert_eq!(
        after(&a, "--server"),
        format!("https://distillery-server:{port}")
    );
    let labels = &server["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(
            &labels[k.as_str().unwrap()],
            v,
            "the Service selects the server pod"
        );
    }
    // TLS: the files the flags name are in the mounted Secret's folder.
    assert!(
        after(&s, "--tls-cert").starts_with("/tls/") && after(&a, "--tls-ca").starts_with("/tls/")
    );
    // Both read the ConfigMap's scenario, and it is a valid federated scenario.
    assert_eq!(after(&s, "serve"), "/scenario/fed.toml");
    assert_eq!(after(&a, "client"), "/scenario/fed.toml");
    let map = doc(&docs, "ConfigMap/distillery-scenario");
    let text = map["data"]["fed.toml"].as_str().unwrap();
    let l = distillery::scenario::parse(text, Path::new("fed.toml")).unwrap();
    assert!(l.scenario.federated_section().clients >= n as usize);
    // The flags are ones the binary knows.
    for sub in ["serve", "client"] {
        let help = Command::new(env!("CARGO_BIN_EXE_distillery"))
            .args([sub, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        let a = if sub == "serve" { &s } else { &a };
        for flag in a.iter().filter(|f| f.starts_with("--")) {
            assert!(help.contains(flag.as_str()), "{sub} has no {flag}");
        }
    }
}

/// A folder holding a stub `srun` that appends its command line to `log` and then runs it.
fn stub_srun(dir: &Path, log: &Path) -> PathBuf {
    let bin = dir.join("stub-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let srun = bin.join("srun");
    std::fs::write(
        &srun,
        format!(
            "#!/bin/bash\necho \"$*\" >>{}\nexec \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&srun).status().unwrap();
    bin
}

#[test]
fn the_slurm_scripts_run_a_fleet_through_srun() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fed.toml");
    let text = scenario_text("slurm", "strategies = [\"fedavg\"]\nrounds = 1")
        .replace("clients = 5", "clients = 4");
    std::fs::write(&file, &text).unwrap();
    let log = dir.path().join("srun.log");
    let path = format!(
        "{}:{}",
        stub_srun(dir.path(), &log).display(),
        std::env::var("PATH").unwrap()
    );
    let run = dir.path().join("run");
    let port = free_port().to_string();
    let script = |name: &str, task: Option<&str>| {
        let mut c = Command::new("bash");
        c.arg(repo(&format!("deploy/slurm/{name}")))
            .env("PATH", &path)
            .env("SCENARIO", &file)
            .env("DISTILLERY_RUN", &run)
            .env("DISTILLERY_BIN", env!("CARGO_BIN_EXE_distillery"))
            .env("DISTILLERY_HOST", "127.0.0.1")
            .env("DISTILLERY_BIND", "127.0.0.1")
            .env("DISTILLERY_PORT", &port)
            .env("DISTILLERY_RETRY_FOR", "60")
            .env_remove("DISTILLERY_TOKEN")
            .env_remove("DISTILLERY_TLS_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(k) = task {
            c.env("SLURM_ARRAY_TASK_ID", k)
                .env("SLURM_ARRAY_TASK_COUNT", "2");
        }
        c.spawn().unwrap()
    };
    // The client tasks start first, as a scheduler may start them: they wait for the URL.
    let tasks: Vec<_> = ["0", "1"]
        .iter()
        .map(|k| script("clients.sbatch", Some(k)))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let server = script("server.sbatch", None);
    for (k, t) in tasks.into_iter().enumerate() {
        let o = t.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "task {k}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let said = String::from_utf8_lossy(&o.stdout);
        let (a, b) = (2 * k, 2 * k + 1);
        assert!(
            said.contains(&format!("client {a}: 1 tasks done")),
            "{said}"
        );
        assert!(
            said.contains(&format!("client {b}: 1 tasks done")),
            "{said}"
        );
    }
    let o = server.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "server: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let bin = env!("CARGO_BIN_EXE_distillery");
    let f = file.display();
    let r = run.display();
    assert!(
        lines[0].starts_with(&format!(
            "{bin} client {f} --server http://127.0.0.1:{port} --shard 0/2 --state {r}/state"
        )),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains(" --shard 1/2 "), "{}", lines[1]);
    assert!(
        lines[2].starts_with(&format!(
            "{bin} serve {f} --addr 127.0.0.1:{port} --results {r}/results"
        )),
        "{}",
        lines[2]
    );
    let done: Vec<PathBuf> = std::fs::read_dir(run.join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let summary = Summary::load(&done[0]).unwrap();
    let fedavg = &summary.federated().unwrap().strategies["fedavg"];
    assert!(fedavg.final_accuracy.unwrap() > 0.2, "digits, chance 0.1");
    assert!(fedavg.not_accepted.is_empty(), "all four clients answered");
}
