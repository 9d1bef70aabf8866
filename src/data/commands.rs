//! `distillery data list | fetch | verify`: what the data folder holds, downloading datasets
//! into it, and checking its files against the pinned checksums and `SHA256SUMS`.

use super::catalog::{self, DatasetInfo, Format};
use super::fetch;
use super::store::{self, DataAccess};
use crate::error::{Error, Result};

/// Whether a dataset's files are in the data folder, in words.
pub fn presence(info: &DatasetInfo, access: &DataAccess) -> Result<&'static str> {
    let dir = access.dataset_dir(info)?;
    Ok(if store::find_in_data(info, access)?.is_some() {
        "yes"
    } else if matches!(info.format, Format::CifarPython { .. })
        && dir.join(info.files[0].name).is_file()
    {
        "archive"
    } else if info
        .files
        .iter()
        .any(|f| dir.join(f.name).is_file() || dir.join(format!("{}.part", f.name)).is_file())
    {
        "partly"
    } else {
        "no"
    })
}

/// The table `data list` prints: every dataset's name, size, licence, folder, presence and
/// first URL, under the data folder's path.
pub fn list(access: &DataAccess) -> Result<String> {
    let root = access.data_dir()?;
    let why = if std::env::var_os("DISTILLERY_DATA").is_some_and(|v| !v.is_empty()) {
        "DISTILLERY_DATA"
    } else {
        "the platform cache folder; set DISTILLERY_DATA for another"
    };
    let mut out = format!("data folder: {} ({why})\n", root.display());
    out += &format!(
        "{:<14} {:>12}  {:<8} {}\n",
        "name", "download", "present", "licence"
    );
    for info in catalog::catalog() {
        out += &format!(
            "{:<14} {:>12}  {:<8} {}\n",
            info.name,
            info.size,
            presence(info, access)?,
            info.license
        );
        let url = info
            .files
            .first()
            .and_then(|f| Some((f, access.urls(info, f).into_iter().next()?)))
            .map(|(f, u)| u.strip_suffix(f.name).unwrap_or(&u).to_string())
            .unwrap_or_default();
        let names: Vec<&str> = info.files.iter().map(|f| f.name).collect();
        out += &format!(
            "{:16}in {}/\n{:16}from {url} ({})\n",
            "",
            access.dataset_dir(info)?.display(),
            "",
            names.join(", ")
        );
    }
    Ok(out)
}

/// Fetches each dataset of `names` (every one for `all`); the lines to print.
pub fn fetch_all(names: &[String], access: &DataAccess) -> Result<String> {
    let infos = resolve(names)?;
    let mut out = String::new();
    for info in infos {
        let got = fetch::fetch(info, access)?;
        let dir = access.dataset_dir(info)?;
        out += &if got.downloaded.is_empty() {
            format!("{}: already in {}\n", info.name, dir.display())
        } else {
            format!(
                "{}: {} file(s), {:.1} MB, in {}\n",
                info.name,
                got.downloaded.len(),
                got.bytes as f64 / 1e6,
                dir.display()
            )
        };
    }
    Ok(out)
}

fn resolve(names: &[String]) -> Result<Vec<&'static DatasetInfo>> {
    if names.iter().any(|n| n == "all") {
        return Ok(catalog::catalog().iter().collect());
    }
    names
        .iter()
        .map(|n| {
            catalog::find(n).ok_or_else(|| {
                Error::Usage(format!(
                    "unknown dataset {n:?}; known: {} (or all)",
                    catalog::names().join(", ")
                ))
            })
        })
        .collect()
}

/// Checks the datasets of `names` (every one present when empty): each file with a pin
/// against it, each file in `SHA256SUMS` against its line. The lines to print, and whether
/// everything checked matched.
pub fn verify(names: &[String], access: &DataAccess) -> Result<(String, bool)> {
    let infos = if names.is_empty() {
        catalog::catalog().iter().collect()
    } else {
        resolve(names)?
    };
    let (mut out, mut ok) = (String::new(), true);
    for info in infos {
        let dir = access.dataset_dir(info)?;
        if !dir.is_dir() {
            if !names.is_empty() {
                out += &format!("{}: not in {}\n", info.name, dir.display());
                ok = false;
            }
            continue;
        }
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for f in info.files {
            let p = dir.join(f.name);
            if !p.is_file() || (f.md5.is_none() && f.sha256.is_none()) {
                continue;
            }
            match store::check_pins(&p, f)? {
                None => good.push(format!("{} (pinned)", f.name)),
                Some(why) => bad.push(format!("{}: {why}", p.display())),
            }
        }
        for (want, name) in store::read_sums(&dir) {
            let p = dir.join(&name);
            if !p.is_file() {
                continue;
            }
            let (_, got) = store::hash_file(&p)?;
            if got == want {
                good.push(format!("{name} (SHA256SUMS)"));
            } else {
                bad.push(format!(
                    "{}: SHA-256 is {got}, SHA256SUMS says {want}",
                    p.display()
                ));
            }
        }
        ok &= bad.is_empty();
        out += &match (good.len(), bad.is_empty()) {
            (0, true) => format!(
                "{}: nothing to check in {} (no pinned file, no SHA256SUMS)\n",
                info.name,
                dir.display()
            ),
            (n, true) => format!("{}: {n} file(s) match: {}\n", info.name, good.join(", ")),
            _ => format!(
                "{}: MISMATCH (delete the file and fetch again):\n  {}\n",
                info.name,
                bad.join("\n  ")
            ),
        };
    }
    if out.is_empty() {
        out = format!(
            "no dataset in {} yet (`distillery data fetch NAME`)\n",
            access.data_dir()?.display()
        );
    }
    Ok((out, ok))
}
