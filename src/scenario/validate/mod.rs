//! Every value of a parsed scenario checked at once: each problem names the field, the value, what
//! was expected and the line, one problem per line of the message.

use super::edit::locate;
use super::{Kind, MethodEntry, Scenario};
use crate::data::augment::Dsa;
use crate::distill::MethodConfig;
use crate::error::Problem;
use streams::{validate_continual, validate_federated};

mod streams;

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
    if let Some(p) = &s.published {
        let ok = (0.0..=100.0).contains(&p.accuracy);
        c.require(ok, "published", "accuracy", p.accuracy, "a percentage");
        let src = !p.source.trim().is_empty();
        c.require(src, "published", "source", "\"\"", "the paper and table");
    }
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
    if let (Some(p), Some(ipc)) = (m.pool(), ipc) {
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
