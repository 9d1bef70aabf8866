//! A pass over a pickle's opcodes before serde-pickle reads it, so that a hostile file is an
//! error rather than a crash: serde-pickle builds and drops values recursively (a pickle nesting
//! lists a few thousand deep overflows the stack) and copies every shared reference (a pickle of
//! a few hundred bytes whose lists hold their predecessor twice expands exponentially). CIFAR's
//! batches are a dict, a numpy array and two lists: a dozen containers and no shared container.
//! This pass refuses more than [`MAX_CONTAINERS`] containers (which bounds the nesting) and any
//! reference to a memoised container (which bounds the expansion), and knows every opcode of
//! protocols 0 to 5 by its argument's length, so it never mistakes data for an opcode.

/// Containers a CIFAR batch may build (it builds about a dozen).
pub const MAX_CONTAINERS: usize = 256;

/// How an opcode's argument is encoded.
enum Arg {
    /// No argument.
    None,
    /// A fixed number of bytes.
    Fixed(usize),
    /// A little-endian length of this many bytes, then that many bytes.
    Counted(usize),
    /// Text up to a newline, this many times.
    Lines(usize),
}

/// What an opcode does to the guard's view of the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Pushes a value that holds no other value (number, string, global, None).
    Atom,
    /// Builds a container (or an object from its arguments).
    Container,
    /// Stores the stack's top in the memo (the id is the argument, or the memo's size).
    Put,
    /// Pushes a memoised value.
    Get,
    /// Anything else (marks, appends, pops, framing).
    Other,
}

fn opcode(op: u8) -> Option<(Arg, Effect)> {
    use Arg::*;
    use Effect::*;
    Some(match op {
        b'(' | b'.' | b'0' | b'1' | b'2' | b'a' | b'b' | b'e' | b's' | b'u' | 0x90 | 0x98 => {
            (None, Other)
        }
        b'N' | 0x88 | 0x89 | b'Q' | 0x93 | 0x97 => (None, Atom),
        b'F' | b'I' | b'L' | b'S' | b'V' | b'P' => (Lines(1), Atom),
        b'c' => (Lines(2), Atom),
        b'i' => (Lines(2), Container),
        b'J' | 0x84 => (Fixed(4), Atom),
        b'K' | 0x82 => (Fixed(1), Atom),
        b'M' | 0x83 => (Fixed(2), Atom),
        b'G' => (Fixed(8), Atom),
        b'T' | b'X' | b'B' | 0x8b => (Counted(4), Atom),
        b'U' | b'C' | 0x8c | 0x8a => (Counted(1), Atom),
        0x8d | 0x8e | 0x96 => (Counted(8), Atom),
        b'}' | b']' | b')' | 0x8f | b'd' | b'l' | b't' | 0x85 | 0x86 | 0x87 | 0x91 | b'R'
        | b'o' | 0x81 | 0x92 => (None, Container),
        b'g' => (Lines(1), Get),
        b'h' => (Fixed(1), Get),
        b'j' => (Fixed(4), Get),
        b'p' => (Lines(1), Put),
        b'q' => (Fixed(1), Put),
        b'r' => (Fixed(4), Put),
        0x94 => (None, Put),
        0x80 => (Fixed(1), Other),
        0x95 => (Fixed(8), Other),
        _ => return Option::None,
    })
}

/// Checks `bytes` as described in the module's documentation; the error says what is wrong.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let mut pos = 0usize;
    let mut containers = 0usize;
    // Memo ids (as serde-pickle numbers them) and whether each holds a plain value.
    let mut memo: std::collections::HashMap<u64, bool> = Default::default();
    let mut last = Effect::Other;
    while pos < bytes.len() {
        let op = bytes[pos];
        let (arg, effect) =
            opcode(op).ok_or_else(|| format!("byte {pos}: unknown pickle opcode 0x{op:02x}"))?;
        let start = pos + 1;
        let end = match arg {
            Arg::None => start,
            Arg::Fixed(n) => start + n,
            Arg::Counted(n) => {
                let len = bytes
                    .get(start..start + n)
                    .ok_or_else(|| format!("byte {pos}: truncated pickle"))?;
                let mut word = [0u8; 8];
                word[..n].copy_from_slice(len);
                let len = usize::try_from(u64::from_le_bytes(word))
                    .map_err(|_| format!("byte {pos}: a length beyond memory"))?;
                start
                    .checked_add(n)
                    .and_then(|s| s.checked_add(len))
                    .ok_or_else(|| format!("byte {pos}: a length beyond the file"))?
            }
            Arg::Lines(k) => {
                let mut e = start;
                for _ in 0..k {
                    let nl = bytes[e.min(bytes.len())..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .ok_or_else(|| format!("byte {pos}: truncated pickle"))?;
                    e += nl + 1;
                }
                e
            }
        };
        if end > bytes.len() {
            return Err(format!("byte {pos}: truncated pickle"));
        }
        let arg_bytes = &bytes[start..end];
        match effect {
            Effect::Container => {
                containers += 1;
                if containers > MAX_CONTAINERS {
                    return Err(format!(
                        "the pickle builds more than {MAX_CONTAINERS} containers (a CIFAR batch builds a dozen)"
                    ));
                }
            }
            Effect::Put => {
                let id = match op {
                    0x94 => memo.len() as u64,
                    _ => {
                        memo_id(op, arg_bytes).ok_or_else(|| format!("byte {pos}: bad memo id"))?
                    }
                };
                // The top is a plain value only when the opcode before pushed one.
                memo.insert(id, last == Effect::Atom);
            }
            Effect::Get => {
                let id =
                    memo_id(op, arg_bytes).ok_or_else(|| format!("byte {pos}: bad memo id"))?;
                if memo.get(&id) != Some(&true) {
                    return Err(format!(
                        "byte {pos}: the pickle refers back to a container (or to nothing), which a CIFAR batch never does"
                    ));
                }
            }
            _ => {}
        }
        // A value fetched from the memo is as plain as the one stored.
        last = if effect == Effect::Get {
            Effect::Atom
        } else {
            effect
        };
        pos = end;
        if op == b'.' {
            return Ok(());
        }
    }
    Err("the pickle ends without its STOP opcode (truncated?)".into())
}

/// The memo id a PUT or GET opcode names: a byte, a little-endian u32, or decimal text.
fn memo_id(op: u8, arg: &[u8]) -> Option<u64> {
    match op {
        b'h' | b'q' => arg.first().map(|&b| b as u64),
        b'j' | b'r' => Some(u32::from_le_bytes(arg.try_into().ok()?) as u64),
        _ => std::str::from_utf8(arg).ok()?.trim().parse().ok(),
    }
}
