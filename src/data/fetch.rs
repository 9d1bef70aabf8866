//! Downloading a named dataset into the data folder: each file into `<name>.part` (continued
//! with an HTTP range request when an earlier transfer was cut), checked against its pinned
//! checksum, then renamed, so a file under its own name is always complete. CIFAR archives are
//! extracted (their members' SHA-256s recorded in `SHA256SUMS`) and removed.

use super::catalog::{DatasetInfo, Format, RemoteFile};
use super::store::{self, DataAccess};
use crate::error::{Error, Result};
use crate::progress::Progress;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a fetch did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fetched {
    /// The files downloaded (none when the dataset was already there).
    pub downloaded: Vec<PathBuf>,
    /// Bytes received.
    pub bytes: u64,
}

/// The message for a dataset that is not in the data folder: the folder to put its files in,
/// the files, and where to download them (for copying them by hand onto an offline machine).
pub fn missing_message(info: &DatasetInfo, access: &DataAccess, why: &str) -> String {
    let dir = access
        .dataset_dir(info)
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "<DISTILLERY_DATA>/".to_string() + info.name);
    let names: Vec<&str> = info.files.iter().map(|f| f.name).collect();
    // The mirrors' base URLs (a file's URL is the base and its name).
    let (bases, example) = match info.files.first() {
        Some(f) => {
            let urls = access.urls(info, f);
            let bases: Vec<String> = urls
                .iter()
                .map(|u| u.strip_suffix(f.name).unwrap_or(u).to_string())
                .collect();
            (bases, urls.first().cloned().unwrap_or_default())
        }
        None => (Vec::new(), String::new()),
    };
    format!(
        "dataset {name} is not in the data folder ({why}). Run `distillery data fetch {name}`, or put {files} in {dir}/, downloaded from {bases} (e.g. {example}). `DISTILLERY_DATA` names the data folder; `root = \"DIR\"` in [data] reads an existing torchvision folder instead",
        name = info.name,
        files = names.join(", "),
        bases = bases.join(" or "),
    )
}

/// The dataset's files in the data folder, fetched first when missing (unless offline). A CIFAR
/// archive already in its folder (copied by hand) is checked and extracted without a download.
pub fn ensure(info: &DatasetInfo, access: &DataAccess) -> Result<store::Found> {
    let dir = access.dataset_dir(info)?;
    if let Some(found) = store::find_in_data(info, access)? {
        return Ok(found);
    }
    let have_archive = matches!(info.format, Format::CifarPython { .. })
        && info.files.iter().all(|f| dir.join(f.name).is_file());
    if access.offline && !have_archive {
        return Err(Error::Usage(missing_message(
            info,
            access,
            "downloads are off: --offline or DISTILLERY_OFFLINE",
        )));
    }
    fetch(info, access)?;
    store::find_in(info, &dir).ok_or_else(|| {
        Error::Usage(missing_message(
            info,
            access,
            "its files are still incomplete after the fetch",
        ))
    })
}

/// Downloads what is missing of `info` into its folder of the data folder and extracts a CIFAR
/// archive; files already there are kept (a second fetch downloads nothing).
pub fn fetch(info: &DatasetInfo, access: &DataAccess) -> Result<Fetched> {
    let dir = access.dataset_dir(info)?;
    let mut out = Fetched::default();
    if store::find_in_data(info, access)?.is_some() {
        return Ok(out);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("distillery/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    for file in info.files {
        let target = dir.join(file.name);
        if target.is_file() {
            continue;
        }
        if access.offline {
            return Err(Error::Usage(missing_message(
                info,
                access,
                "downloads are off: --offline or DISTILLERY_OFFLINE",
            )));
        }
        let mut errors = Vec::new();
        for url in access.urls(info, file) {
            match fetch_file(&agent, &url, &target, file, access.progress) {
                Ok(n) => {
                    out.bytes += n;
                    out.downloaded.push(target.clone());
                    errors.clear();
                    break;
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        if !errors.is_empty() {
            return Err(Error::Usage(format!(
                "{}\n{}",
                errors.join("\n"),
                missing_message(info, access, "the download failed")
            )));
        }
    }
    if let Format::CifarPython { variant, folder } = info.format {
        let archive = dir.join(info.files[0].name);
        if let Some(bad) = store::check_pins(&archive, &info.files[0])? {
            return Err(Error::data(
                &archive,
                format!("{bad}: not the published archive; delete it and fetch again"),
            ));
        }
        extract(
            &archive,
            &dir,
            folder,
            super::catalog::cifar_members(variant),
        )?;
    }
    Ok(out)
}

/// One file from one URL into `target`, through `target.part`; the bytes received.
fn fetch_file(
    agent: &ureq::Agent,
    url: &str,
    target: &Path,
    file: &RemoteFile,
    progress: bool,
) -> std::result::Result<u64, String> {
    let part = part_path(target);
    tracing::info!("fetching {url}");
    let got = download(agent, url, &part, progress)?;
    let check = store::check_pins(&part, file).map_err(|e| e.to_string())?;
    if let Some(bad) = check {
        // A corrupt copy is not worth resuming: the next fetch starts afresh.
        let _ = std::fs::remove_file(&part);
        return Err(format!(
            "checksum mismatch: {bad}; the download was removed"
        ));
    }
    if file.md5.is_none() && file.sha256.is_none() {
        // Nothing pinned: record what arrived, so `data verify` notices a later change.
        let (_, sha) = store::hash_file(&part).map_err(|e| e.to_string())?;
        let dir = target.parent().unwrap_or(Path::new("."));
        store::record_sum(dir, file.name, &sha).map_err(|e| e.to_string())?;
        tracing::warn!(
            "{}: no checksum is pinned for this file; its SHA-256 {sha} is recorded in {}",
            file.name,
            dir.join(store::SUMS).display()
        );
    }
    std::fs::rename(&part, target).map_err(|e| format!("{}: {e}", target.display()))?;
    tracing::info!("fetched {} ({got} bytes)", target.display());
    Ok(got)
}

fn part_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    target.with_file_name(name)
}

/// Streams `url` into `part`, continuing a partial file when the server takes a range request;
/// the bytes received. An interrupted transfer leaves `part` to be continued next time.
fn download(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    progress: bool,
) -> std::result::Result<u64, String> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = match req.call() {
        // The partial file is already whole or longer than the file: start again.
        Err(ureq::Error::StatusCode(416)) if have > 0 => {
            std::fs::remove_file(part).map_err(|e| format!("{}: {e}", part.display()))?;
            return download(agent, url, part, progress);
        }
        Err(e) => return Err(e.to_string()),
        Ok(r) => r,
    };
    let resumed = resp.status().as_u16() == 206 && range_start(&resp) == Some(have);
    if resp.status().as_u16() == 206 && !resumed {
        return Err("the server answered the range request with another range".into());
    }
    let start = if resumed { have } else { 0 };
    let body = resp.into_body();
    let total = body.content_length().map(|n| n + start);
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(part)
        .map_err(|e| format!("{}: {e}", part.display()))?;
    let bar = match (progress, total) {
        (true, Some(t)) => Progress::bytes(t),
        _ => Progress::hidden(),
    };
    bar.skip(start);
    let mut reader = body.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    let result = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = out.write_all(&buf[..n]) {
                    break Err(format!("{}: {e}", part.display()));
                }
                received += n as u64;
                bar.skip(n as u64);
            }
            Err(e) => {
                break Err(format!(
                    "transfer interrupted after {} bytes{}: {e} (the partial file {} is continued by the next fetch)",
                    start + received,
                    total.map(|t| format!(" of {t}")).unwrap_or_default(),
                    part.display()
                ))
            }
        }
    };
    bar.finish();
    out.sync_all()
        .map_err(|e| format!("{}: {e}", part.display()))?;
    result?;
    if let Some(t) = total.filter(|&t| t != start + received) {
        return Err(format!(
            "received {} of {t} bytes (the partial file {} is continued by the next fetch)",
            start + received,
            part.display()
        ));
    }
    Ok(received)
}

/// The first byte of a 206 answer's `Content-Range: bytes FIRST-LAST/TOTAL`.
fn range_start(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let v = resp.headers().get("content-range")?.to_str().ok()?;
    v.strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Extracts `folder/<member>` for each member of the `.tar.gz` `archive` into `dir/folder`
/// (through `folder.part`, so a folder under its own name is whole), records the members'
/// SHA-256s in `SHA256SUMS`, then removes the archive. Other entries are skipped: an entry's
/// own path never decides where anything is written.
pub fn extract(archive: &Path, dir: &Path, folder: &str, members: &[&str]) -> Result<()> {
    let tmp = dir.join(format!("{folder}.part"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let f = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let bad = |e: std::io::Error| Error::data(archive, format!("corrupt archive: {e}"));
    let mut found = vec![false; members.len()];
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./");
        let Some(i) = members.iter().position(|m| path == format!("{folder}/{m}")) else {
            continue;
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let dst = tmp.join(members[i]);
        let mut out = File::create(&dst).map_err(|e| Error::io(&dst, e))?;
        std::io::copy(&mut entry, &mut out).map_err(bad)?;
        found[i] = true;
    }
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(Error::data(
            archive,
            format!("the archive has no {folder}/{}", members[i]),
        ));
    }
    for m in members {
        let (_, sha) = store::hash_file(&tmp.join(m))?;
        store::record_sum(dir, &format!("{folder}/{m}"), &sha)?;
    }
    let final_dir = dir.join(folder);
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    std::fs::remove_file(archive).map_err(|e| Error::io(archive, e))?;
    tracing::info!(
        "extracted {} into {}",
        archive.display(),
        final_dir.display()
    );
    Ok(())
}
