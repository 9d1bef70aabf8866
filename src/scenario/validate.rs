//! Every value of a parsed scenario checked at once: each problem names the field, the value, what
//! was expected and the line, one problem per line of the message.

use super::edit::locate;
use super::{ClEntry, ContinualSection, Kind, MethodEntry, Scenario, StreamKind};
use crate::data::augment::Dsa;
use crate::distill::MethodConfig;
use crate::error::Problem;

/// Collects problems with their lines.
struct Checker<'a> {
    text: &'a str,
    errors: Vec<String>,
}

impl Checker<'_> {
    fn fail(&mut self, section: &str, key: &str, value: impl std::fmt::Display, expected: &str) {
        let field = if section.is_empty() {
            key.to_string()
        } else {
            format!("{section}.{key}")
        };
        // A key inside an inline table (`federated.faults.crash`) is found by its last part.
        let (table, leaf) = match key.rsplit_once('.') {
            Some((t, k)) if section.is_empty() => (t.to_string(), k),
            Some((t, k)) => (format!("{section}.{t}"), k),
            None => (section.to_string(), key),
        };
        let at = locate(self.text, &table, leaf)
            .or_else(|| {
                locate(
                    self.text,
                    section,
                    key.split(['.', '[']).next().unwrap_or(key),
                )
            })
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        self.errors
            .push(format!("{field} = {value}{at}: expected {expected}"));
    }

    fn require(
        &mut self,
        ok: bool,
        section: &str,
        key: &str,
        value: impl std::fmt::Display,
        what: &str,
    ) {
        if !ok {
            self.fail(section, key, value, what);
        }
    }

    fn positive(&mut self, section: &str, key: &str, v: usize) {
        self.require(v > 0, section, key, v, "a positive integer");
    }

    /// Records `problems` of the settings in `section`.
    fn problems(&mut self, section: &str, problems: Vec<Problem>) {
        for p in problems {
            self.fail(section, &p.key, p.value, &p.expected);
        }
    }

    /// The method `entry` of list `list` (in `section`) resolved against `[distill]`, its own
    /// problems recorded; None (recorded) when it names no method.
    fn method(
        &mut self,
        s: &Scenario,
        section: &str,
        list: &str,
        entry: &MethodEntry,
    ) -> Option<MethodConfig> {
        match s.distill_section().config_for(entry) {
            Ok(c) => {
                if let MethodEntry::Inline(_) = entry {
                    let epochs = s.experts_section().epochs;
                    self.problems(&format!("{section}.{list}"), c.problems(epochs));
                }
                Some(c)
            }
            Err(m) => {
                self.fail(section, list, format!("[.., {:?}, ..]", entry.name()), &m);
                None
            }
        }
    }
}

/// Checks every value of a parsed scenario; returns all problems found, one per line.
pub fn validate(s: &Scenario, text: &str) -> Result<(), String> {
    let mut c = Checker {
        text,
        errors: Vec::new(),
    };
    let name_ok = !s.name.trim().is_empty()
        && s.name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    c.require(
        name_ok,
        "",
        "name",
        format!("{:?}", s.name),
        "a non-empty name of letters, digits, '-', '_' or '.' (it names the results folder)",
    );
    c.problems("data", s.data.problems());
    c.problems("model", s.model.problems());
    c.problems("train", s.train.problems());
    if let Some(d) = &s.distill {
        if let Some(st) = &d.run.dsa_strategy {
            if let Err(m) = Dsa::new(st) {
                c.fail("distill", "dsa_strategy", format!("{st:?}"), &m);
            }
        }
        c.problems("distill", d.method.problems(s.experts_section().epochs));
    }
    if let Some(x) = &s.experts {
        c.problems("experts", x.problems());
    }
    if let Some(e) = &s.eval {
        c.problems("eval", e.problems());
    }
    if let Some(a) = &s.audit {
        c.problems("audit", a.problems());
        validate_audit_use(&mut c, s, a);
    }
    match s.kind {
        Kind::Distill => validate_distill(&mut c, s),
        Kind::Experts => {}
        Kind::Continual => validate_continual(&mut c, s),
        Kind::Federated => validate_federated(&mut c, s, false),
        Kind::FederatedContinual => validate_federated(&mut c, s, true),
        Kind::Audit => validate_audit_kind(&mut c, s),
        Kind::Train => {
            for (present, section) in [
                (s.distill.is_some(), "a [distill]"),
                (s.eval.is_some(), "an [eval]"),
                (s.experts.is_some(), "an [experts]"),
                (s.continual.is_some(), "a [continual]"),
                (s.federated.is_some(), "a [federated]"),
                (s.audit.is_some(), "an [audit]"),
            ] {
                c.require(
                    !present,
                    "",
                    "kind",
                    "\"train\"",
                    &format!(
                        "kind = \"distill\", \"experts\", \"continual\" or \"federated\" when {section} section is given"
                    ),
                );
            }
        }
    }
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(c.errors.join("\n"))
    }
}

/// `[audit]` keys that only some kinds read.
fn validate_audit_use(c: &mut Checker, s: &Scenario, a: &crate::audit::AuditSettings) {
    let holds_out = a.member_share.is_some() || a.members_per_class.is_some();
    c.require(
        !holds_out || matches!(s.kind, Kind::Distill | Kind::Continual | Kind::Federated),
        "audit",
        if a.member_share.is_some() {
            "member_share"
        } else {
            "members_per_class"
        },
        "(given)",
        "a member split only in distill, continual and federated runs (the runs that make sets from their training data)",
    );
    c.require(
        a.set.is_none() || s.kind == Kind::Audit,
        "audit",
        "set",
        "(given)",
        "a set file only with kind = \"audit\"",
    );
}

/// `kind = "audit"`: a set file to audit, and no section that makes sets.
fn validate_audit_kind(c: &mut Checker, s: &Scenario) {
    c.require(
        s.audit.as_ref().is_some_and(|a| a.set.is_some()),
        "audit",
        "set",
        "(missing)",
        "the synthetic set file to audit (a .safetensors written by distillery)",
    );
    c.require(
        s.audit.as_ref().is_none_or(|a| a.enabled),
        "audit",
        "enabled",
        "false",
        "true in an audit scenario",
    );
    for (present, what) in [
        (s.distill.is_some(), "[distill]"),
        (s.experts.is_some(), "[experts]"),
        (s.continual.is_some(), "[continual]"),
        (s.federated.is_some(), "[federated]"),
    ] {
        c.require(
            !present,
            "",
            "kind",
            "\"audit\"",
            &format!("no {what} section in an audit scenario (it audits a set made elsewhere)"),
        );
    }
}

/// The checks of a method used to make sets of `ipc` images per class (`None`: per memory slot).
fn check_use(c: &mut Checker, section: &str, key: &str, m: &MethodConfig, ipc: Option<usize>) {
    let pool = match m {
        MethodConfig::Dm(s) => s.pool,
        MethodConfig::Random(s) | MethodConfig::Herding(s) | MethodConfig::Kcenter(s) => s.pool,
        _ => None,
    };
    if let (Some(p), Some(ipc)) = (pool, ipc) {
        c.require(
            p >= ipc,
            section,
            key,
            format!("{} with pool = {p}", m.name()),
            "a pool of at least ipc candidates per class",
        );
    }
    if let MethodConfig::Selmatch(s) = m {
        c.require(
            s.mtt.init == crate::distill::InitKind::Real,
            section,
            key,
            format!("selmatch with init = {:?}", s.mtt.init),
            "selmatch with its window as the start (leave `init` out)",
        );
    }
}

fn validate_distill(c: &mut Checker, s: &Scenario) {
    if s.continual.is_some() || s.federated.is_some() {
        c.fail(
            "",
            "kind",
            "\"distill\"",
            "no [continual] or [federated] section in a distill scenario",
        );
    }
    let d = s.distill_section();
    c.positive("distill", "ipc", d.run.ipc);
    c.require(
        d.run.ipc <= 10000,
        "distill",
        "ipc",
        d.run.ipc,
        "at most 10000 images per class",
    );
    c.positive("distill", "log_every", d.run.log_every);
    c.positive("distill", "checkpoint_every", d.run.checkpoint_every);
    let e = s.eval_section();
    c.require(
        d.run.coverage_every == 0 || e.coverage,
        "distill",
        "coverage_every",
        d.run.coverage_every,
        "0 while [eval] coverage = false",
    );
    if let Some(t) = d.run.max_seconds {
        c.require(
            t.is_finite() && t > 0.0,
            "distill",
            "max_seconds",
            t,
            "a positive number of seconds",
        );
    }
    check_use(c, "distill", "method", &d.method, Some(d.run.ipc));
    for b in &d.run.baselines {
        if let Some(m) = c.method(s, "distill", "baselines", b) {
            check_use(c, "distill", "baselines", &m, Some(d.run.ipc));
        }
    }
}

/// The memory methods of a continual or federated-continual comparison, checked.
fn check_memories(c: &mut Checker, s: &Scenario, section: &str, entries: &[ClEntry]) {
    if entries.is_empty() {
        c.fail(section, "strategies", "[]", "at least one strategy");
    }
    let mut seen = Vec::new();
    for e in entries {
        let name = e.name();
        if seen.contains(&name) {
            c.fail(
                section,
                "strategies",
                format!("[.., {name:?}, ..]"),
                "each strategy once",
            );
        }
        seen.push(name);
        if let ClEntry::Memory(m) = e {
            if let Some(cfg) = c.method(s, section, "strategies", m) {
                check_use(c, section, "strategies", &cfg, None);
                needs_fixed_window(c, section, "strategies", &cfg);
            }
        }
    }
}

/// SelMatch outside a distill run has no test set to search windows on: `beta` must be given.
fn needs_fixed_window(c: &mut Checker, section: &str, key: &str, m: &MethodConfig) {
    if let MethodConfig::Selmatch(sm) = m {
        c.require(
            sm.beta.is_some(),
            section,
            key,
            "selmatch without beta",
            "selmatch with a fixed window start `beta` (the window search tests on the test set, which a client or a memory never sees)",
        );
    }
}

fn validate_continual(c: &mut Checker, s: &Scenario) {
    let k = s.continual.clone().unwrap_or_default();
    check_continual_section(c, &k);
    check_memories(c, s, "continual", &k.strategies);
    for (present, what) in [
        (s.eval.is_some(), "[eval]"),
        (s.federated.is_some(), "[federated]"),
    ] {
        c.require(
            !present,
            "",
            "kind",
            "\"continual\"",
            &format!("no {what} section in a continual scenario (the learner trains with [train])"),
        );
    }
    if s.distill.as_ref().is_some_and(|d| d.given.contains("ipc")) {
        c.fail(
            "distill",
            "ipc",
            s.distill_section().run.ipc,
            "no ipc in a continual scenario: the memory budget decides images per class",
        );
    }
}

/// The `[continual]` section's own values.
fn check_continual_section(c: &mut Checker, k: &ContinualSection) {
    c.positive("continual", "tasks", k.tasks);
    if let (Some(_), Some(_)) = (k.memory_total, k.memory_per_class) {
        c.fail(
            "continual",
            "memory_total",
            "(with memory_per_class)",
            "either memory_total or memory_per_class, not both",
        );
    }
    if let Some(n) = k.memory_per_class {
        c.positive("continual", "memory_per_class", n);
    }
    if let Some(n) = k.memory_total {
        c.positive("continual", "memory_total", n);
    }
    c.require(
        k.replay_fraction > 0.0 && k.replay_fraction < 1.0,
        "continual",
        "replay_fraction",
        k.replay_fraction,
        "a share of the batch in (0, 1)",
    );
    c.positive("continual", "memory_epochs", k.memory_epochs);
    c.require(
        k.max_degrees.is_finite() && k.max_degrees.abs() <= 360.0,
        "continual",
        "max_degrees",
        k.max_degrees,
        "an angle from -360 to 360",
    );
    let incremental = k.stream == StreamKind::ClassIncremental;
    c.require(
        k.class_groups.is_none() || incremental,
        "continual",
        "class_groups",
        "(given)",
        "class groups on a class_incremental stream",
    );
    c.require(
        !k.task_incremental || incremental,
        "continual",
        "task_incremental",
        "true",
        "task-incremental heads on a class_incremental stream (domain streams share all classes)",
    );
}

fn validate_federated(c: &mut Checker, s: &Scenario, continual: bool) {
    let f = s.federated_section();
    check_federated_section(c, &f);
    let d = s.distill_section();
    c.positive("distill", "ipc", d.run.ipc);
    let mut labels = Vec::new();
    for e in &f.strategies {
        let (label, name) = (e.label(), e.kind.name());
        c.require(
            e.kind.is_continual() == continual,
            "federated",
            "strategies",
            format!("[.., {name:?}, ..]"),
            match continual {
                true => "fedavg_finetune, fedavg_replay, distilled_memory or joint in a federated_continual scenario",
                false => "fedavg, distilled_oneshot or distilled_iterative in a federated scenario (the stream strategies need kind = \"federated_continual\")",
            },
        );
        c.require(
            !labels.contains(&label),
            "federated",
            "strategies",
            format!("[.., {label:?}, ..]"),
            "each strategy once",
        );
        labels.push(label);
        let method = match &e.method {
            Some(m) => c.method(s, "federated", "strategies", m),
            None => Some(d.method.clone()),
        };
        let Some(m) = method.filter(|_| e.kind.distils()) else {
            continue;
        };
        check_use(c, "federated", "strategies", &m, Some(d.run.ipc));
        needs_fixed_window(c, "federated", "strategies", &m);
        c.require(
            e.kind != crate::fed::strategy::StrategyKind::DistilledIterative
                || matches!(m, MethodConfig::Dm(_)),
            "distill",
            "method",
            format!("{:?}", m.name()),
            "\"dm\" with distilled_iterative (FedDM distils with DM around the global model)",
        );
    }
    if continual {
        let k = s.continual.clone().unwrap_or_default();
        check_continual_section(c, &k);
        c.require(
            crate::scenario::edit::locate(c.text, "continual", "strategies").is_none(),
            "continual",
            "strategies",
            "(given)",
            "the strategies of a federated_continual scenario in [federated] strategies",
        );
        c.require(
            !k.task_incremental,
            "continual",
            "task_incremental",
            "true",
            "one shared head (task-incremental heads are not simulated federated)",
        );
        c.positive("federated", "replay_memory_total", f.replay_memory_total);
        c.method(s, "federated", "replay_memory", &f.replay_memory);
    } else {
        c.require(s.continual.is_none(), "", "kind", "\"federated\"", "no [continual] section in a federated scenario (a task stream is kind = \"federated_continual\")");
    }
}

/// The `[federated]` section's own values.
fn check_federated_section(c: &mut Checker, f: &crate::scenario::FederatedSection) {
    c.positive("federated", "clients", f.clients);
    c.positive("federated", "rounds", f.rounds);
    c.positive("federated", "max_message_bytes", f.max_message_bytes);
    if f.strategies.is_empty() {
        c.fail("federated", "strategies", "[]", "at least one strategy");
    }
    c.require(
        f.fraction > 0.0 && f.fraction <= 1.0,
        "federated",
        "fraction",
        f.fraction,
        "a share of clients in (0, 1]",
    );
    c.require(
        (0.0..1.0).contains(&f.dropout),
        "federated",
        "dropout",
        f.dropout,
        "a probability in [0, 1)",
    );
    c.require(
        f.rho >= 0.0 && f.rho.is_finite(),
        "federated",
        "rho",
        f.rho,
        "a radius >= 0",
    );
    c.require(
        f.min_clients <= f.clients,
        "federated",
        "min_clients",
        f.min_clients,
        &format!("at most the {} clients", f.clients),
    );
    if let Some(d) = f.deadline_seconds {
        c.require(
            d > 0.0 && d.is_finite(),
            "federated",
            "deadline_seconds",
            d,
            "a positive number of seconds",
        );
    }
    if let Some(w) = f.workers {
        c.positive("federated", "workers", w);
    }
    let x = &f.faults;
    for (key, ids) in [("crash", &x.crash), ("nan", &x.nan), ("slow", &x.slow)] {
        if let Some(i) = ids.iter().find(|&&i| i >= f.clients) {
            c.fail(
                "federated",
                &format!("faults.{key}"),
                i,
                &format!("client ids below {}", f.clients),
            );
        }
    }
    c.require(
        x.slow_seconds >= 0.0 && x.slow_seconds.is_finite(),
        "federated",
        "faults.slow_seconds",
        x.slow_seconds,
        "seconds >= 0",
    );
    if let Err(m) = crate::data::partition::check(&f.partition) {
        c.fail("federated", "partition", format!("{:?}", f.partition), &m);
    }
}
