//! The checks of the continual and federated sections: task streams, memories, partitions and
//! strategy entries.

use super::{check_use, Checker};
use crate::distill::MethodConfig;
use crate::scenario::{ClEntry, ContinualSection, Scenario, StreamKind};

/// The memory methods of a continual or federated-continual comparison, checked.
pub(super) fn check_memories(c: &mut Checker, s: &Scenario, section: &str, entries: &[ClEntry]) {
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
                plain_images(c, section, "strategies", &cfg);
            }
        }
    }
}

/// Federated clients' sets and continual memories are plain images: the wire and the memories
/// carry no partition factor, so IDM's `expand` is for distill runs.
pub(super) fn plain_images(c: &mut Checker, section: &str, key: &str, m: &MethodConfig) {
    let f = m.expand();
    c.require(
        f == 1,
        section,
        key,
        format!("{} with expand = {f}", m.name()),
        "expand = 1: federated clients' sets and continual memories are plain images (partitioned sets are for distill runs)",
    );
}

/// SelMatch outside a distill run has no test set to search windows on: `beta` must be given.
pub(super) fn needs_fixed_window(c: &mut Checker, section: &str, key: &str, m: &MethodConfig) {
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

pub(super) fn validate_continual(c: &mut Checker, s: &Scenario) {
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
pub(super) fn check_continual_section(c: &mut Checker, k: &ContinualSection) {
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

pub(super) fn validate_federated(c: &mut Checker, s: &Scenario, continual: bool) {
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
        // Every federated use of the method (sets, client replay memories) is plain images.
        if let Some(m) = &method {
            plain_images(c, "federated", "strategies", m);
        }
        let Some(m) = method.filter(|_| e.kind.distils()) else {
            continue;
        };
        check_use(c, "federated", "strategies", &m, Some(d.run.ipc));
        needs_fixed_window(c, "federated", "strategies", &m);
        c.require(
            e.kind != crate::fed::strategy::StrategyKind::DistilledIterative
                || m.distils_around_a_network(),
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
pub(super) fn check_federated_section(c: &mut Checker, f: &crate::scenario::FederatedSection) {
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
