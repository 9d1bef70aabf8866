//! A loopback HTTP/1.1 server for the download tests: serves fixture files under
//! `/<dataset>/<file>`, answers `Range: bytes=K-` with 206, counts requests, and can cut one
//! transfer short (the headers promise the whole file, the connection closes after `cut` bytes).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the server has been asked, and what it serves.
#[derive(Default)]
pub struct State {
    /// Path (`/dataset/file`) to bytes.
    pub files: HashMap<String, Vec<u8>>,
    /// Requests answered, by path.
    pub requests: Vec<String>,
    /// The first byte of each range request, in order.
    pub ranges: Vec<u64>,
    /// Cut the next full-file answer after this many bytes.
    pub cut_next: Option<usize>,
}

/// A running server; the thread lives until the test process ends.
pub struct Server {
    /// `http://127.0.0.1:PORT`, the mirror base for `DataAccess::mirror`.
    pub url: String,
    /// Shared with the serving thread.
    pub state: Arc<Mutex<State>>,
}

impl Server {
    /// Starts serving `files` (path, bytes) on a free loopback port.
    pub fn start(files: &[(&str, Vec<u8>)]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            files: files
                .iter()
                .map(|(p, b)| (p.to_string(), b.clone()))
                .collect(),
            ..State::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &shared);
            }
        });
        Server { url, state }
    }

    /// How many requests were answered.
    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// Cuts the next full-file transfer after `bytes` bytes.
    pub fn cut_next(&self, bytes: usize) {
        self.state.lock().unwrap().cut_next = Some(bytes);
    }
}

fn answer(mut stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let range: Option<u64> = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if !k.eq_ignore_ascii_case("range") {
            return None;
        }
        v.trim()
            .strip_prefix("bytes=")?
            .trim_end_matches('-')
            .parse()
            .ok()
    });
    let (body, cut) = {
        let mut s = state.lock().unwrap();
        s.requests.push(path.clone());
        if let Some(r) = range {
            s.ranges.push(r);
        }
        let body = s.files.get(&path).cloned();
        let cut = if range.is_none() && body.is_some() {
            s.cut_next.take()
        } else {
            None
        };
        (body, cut)
    };
    let Some(body) = body else {
        stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    };
    match range {
        Some(r) if r as usize >= body.len() => {
            let h = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(h.as_bytes())?;
        }
        Some(r) => {
            let part = &body[r as usize..];
            let h = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {r}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len() - 1,
                body.len(),
                part.len()
            );
            stream.write_all(h.as_bytes())?;
            stream.write_all(part)?;
        }
        None => {
            let h = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(h.as_bytes())?;
            stream.write_all(&body[..cut.unwrap_or(body.len()).min(body.len())])?;
        }
    }
    stream.flush()?;
    // Closing without a proper shutdown after a cut is the interrupted transfer.
    Ok(())
}
