//! A small NBD server (the protocol of qemu's `nbd://`): fixed newstyle handshake, `NBD_OPT_GO`,
//! `NBD_OPT_INFO`, `NBD_OPT_EXPORT_NAME`, `NBD_OPT_LIST`, `NBD_OPT_ABORT`, and structured replies
//! with the `base:allocation` metadata context (`NBD_OPT_STRUCTURED_REPLY`,
//! `NBD_OPT_LIST_META_CONTEXT`, `NBD_OPT_SET_META_CONTEXT`). Commands: READ, BLOCK_STATUS (which
//! parts of the disk are holes: `qemu-img map` and `convert` skip them instead of reading zeros),
//! WRITE and FLUSH (only with a writable export), DISC. Reference: the NBD protocol document
//! (github.com/NetworkBlockDevice/nbd, doc/proto.md).
//!
//! Concurrency: one thread per connection; exports must be `Sync`. A failed read is answered
//! with EIO for that request only; the connection and the server go on.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const OPT_LIST_META_CONTEXT: u32 = 9;
const OPT_SET_META_CONTEXT: u32 = 10;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_META_CONTEXT: u32 = 4;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

const TFLAG_HAS_FLAGS: u16 = 1;
const TFLAG_READ_ONLY: u16 = 1 << 1;
const TFLAG_SEND_FLUSH: u16 = 1 << 2;
const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_BLOCK_STATUS: u16 = 7;

/// `NBD_CMD_FLAG_REQ_ONE`: a block status reply of one extent.
const CMD_FLAG_REQ_ONE: u16 = 1 << 3;

const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
const REPLY_FLAG_DONE: u16 = 1;
const REPLY_TYPE_NONE: u16 = 0;
const REPLY_TYPE_OFFSET_DATA: u16 = 1;
const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;

/// The one metadata context served, and the id it is given.
const BASE_ALLOCATION: &str = "base:allocation";
const BASE_ALLOCATION_ID: u32 = 1;
/// `base:allocation` flags: a hole (no data stored) that reads as zeros.
const STATE_HOLE: u32 = 1;
const STATE_ZERO: u32 = 2;
/// Most extents in one block status reply (a client asks again for the rest).
const MAX_EXTENTS: usize = 1 << 16;

const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;

/// Largest read or write request served (clients split larger ones; qemu uses 32 MiB).
pub const MAX_REQUEST: u32 = 32 << 20;

/// What an export serves.
pub trait Export: Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset` (the range is within the size). An error becomes EIO.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String>;
    /// Whether writes are accepted.
    fn writable(&self) -> bool {
        false
    }
    /// Writes `data` at `offset` (within the size). An error becomes EIO.
    fn write_at(&self, _offset: u64, _data: &[u8]) -> Result<(), String> {
        Err("read-only export".into())
    }
    /// Makes writes durable.
    fn flush(&self) -> Result<(), String> {
        Ok(())
    }
    /// How `len` bytes from `offset` (within the size) are laid out: runs of data and of holes
    /// that read as zeros, in order, covering at least the first byte. By default all data.
    fn extents(&self, _offset: u64, len: u32) -> Vec<Extent> {
        vec![Extent { length: len, hole: false }]
    }
}

/// A run of an export's bytes for block status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Bytes in the run.
    pub length: u32,
    /// Whether it is a hole that reads as zeros (no data stored).
    pub hole: bool,
}

/// Serves `export` under `name` (clients may also ask for the empty default name) until the
/// listener fails. Each connection gets its own thread.
pub fn serve(listener: TcpListener, name: &str, export: &dyn Export) -> io::Result<()> {
    std::thread::scope(|scope| {
        for conn in listener.incoming() {
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accepting an NBD connection: {e}");
                    continue;
                }
            };
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            scope.spawn(move || {
                tracing::info!("NBD client {peer} connected");
                match handle(stream, name, export) {
                    Ok(()) => tracing::info!("NBD client {peer} disconnected"),
                    Err(e) => tracing::info!("NBD client {peer} dropped: {e}"),
                }
            });
        }
        Ok(())
    })
}

fn read_u16(s: &mut impl Read) -> io::Result<u16> {
    let mut b = [0; 2];
    s.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}
fn read_u32(s: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}
fn read_u64(s: &mut impl Read) -> io::Result<u64> {
    let mut b = [0; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn option_reply(s: &mut impl Write, option: u32, kind: u32, data: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    s.write_all(&out)
}

fn transmission_flags(export: &dyn Export) -> u16 {
    let mut f = TFLAG_HAS_FLAGS;
    if export.writable() {
        f |= TFLAG_SEND_FLUSH;
    } else {
        f |= TFLAG_READ_ONLY | TFLAG_CAN_MULTI_CONN;
    }
    f
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn handle(mut s: TcpStream, name: &str, export: &dyn Export) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)?;
    let client_flags = read_u32(&mut s)?;
    let no_zeroes = client_flags & FLAG_NO_ZEROES as u32 != 0;
    if client_flags & FLAG_FIXED_NEWSTYLE as u32 == 0 {
        return Err(bad("the client does not speak the fixed newstyle handshake"));
    }
    let known = |n: &[u8]| n.is_empty() || n == name.as_bytes();
    let mut session = Session::default();
    loop {
        if read_u64(&mut s)? != IHAVEOPT {
            return Err(bad("bad option magic"));
        }
        let option = read_u32(&mut s)?;
        let len = read_u32(&mut s)?;
        if len > 1 << 20 {
            return Err(bad("option too long"));
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        match option {
            OPT_EXPORT_NAME => {
                if !known(&data) {
                    return Err(bad("unknown export name"));
                }
                let mut out = Vec::new();
                out.extend_from_slice(&export.size().to_be_bytes());
                out.extend_from_slice(&transmission_flags(export).to_be_bytes());
                if !no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&out)?;
                return transmission(s, export, session);
            }
            OPT_ABORT => {
                let _ = option_reply(&mut s, option, REP_ACK, &[]);
                return Ok(());
            }
            OPT_LIST => {
                let mut d = (name.len() as u32).to_be_bytes().to_vec();
                d.extend_from_slice(name.as_bytes());
                option_reply(&mut s, option, REP_SERVER, &d)?;
                option_reply(&mut s, option, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let parsed = (|| {
                    let n = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as usize;
                    let export_name = data.get(4..4 + n)?;
                    let count = u16::from_be_bytes(data.get(4 + n..6 + n)?.try_into().ok()?) as usize;
                    (data.len() == 6 + n + 2 * count).then_some(export_name.to_vec())
                })();
                let Some(export_name) = parsed else {
                    option_reply(&mut s, option, REP_ERR_INVALID, b"malformed NBD_OPT_GO")?;
                    continue;
                };
                if !known(&export_name) {
                    option_reply(&mut s, option, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                }
                let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&export.size().to_be_bytes());
                info.extend_from_slice(&transmission_flags(export).to_be_bytes());
                option_reply(&mut s, option, REP_INFO, &info)?;
                let mut bs = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                for v in [1u32, 4096, MAX_REQUEST] {
                    bs.extend_from_slice(&v.to_be_bytes());
                }
                option_reply(&mut s, option, REP_INFO, &bs)?;
                option_reply(&mut s, option, REP_ACK, &[])?;
                if option == OPT_GO {
                    return transmission(s, export, session);
                }
            }
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    option_reply(&mut s, option, REP_ERR_INVALID, b"NBD_OPT_STRUCTURED_REPLY takes no data")?;
                    continue;
                }
                session.structured = true;
                option_reply(&mut s, option, REP_ACK, &[])?;
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let set = option == OPT_SET_META_CONTEXT;
                if set && !session.structured {
                    option_reply(&mut s, option, REP_ERR_INVALID, b"negotiate structured replies first")?;
                    continue;
                }
                let Some((export_name, queries)) = parse_meta_queries(&data) else {
                    option_reply(&mut s, option, REP_ERR_INVALID, b"malformed metadata context request")?;
                    continue;
                };
                if !known(&export_name) {
                    option_reply(&mut s, option, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                }
                // LIST with no queries lists everything; `base:` asks for every base context.
                let wanted = if set {
                    queries.iter().any(|q| q == BASE_ALLOCATION.as_bytes())
                } else {
                    queries.is_empty() || queries.iter().any(|q| q == b"base:" || q == BASE_ALLOCATION.as_bytes())
                };
                if set {
                    session.base_allocation = wanted;
                }
                if wanted {
                    let mut d = (if set { BASE_ALLOCATION_ID } else { 0 }).to_be_bytes().to_vec();
                    d.extend_from_slice(BASE_ALLOCATION.as_bytes());
                    option_reply(&mut s, option, REP_META_CONTEXT, &d)?;
                }
                option_reply(&mut s, option, REP_ACK, &[])?;
            }
            _ => option_reply(&mut s, option, REP_ERR_UNSUP, b"not supported by arca")?,
        }
    }
}

/// What the handshake settled.
#[derive(Debug, Default, Clone, Copy)]
struct Session {
    /// Structured replies were negotiated: every reply is one.
    structured: bool,
    /// The `base:allocation` context was selected: block status is answered.
    base_allocation: bool,
}

/// The export name and the queries of `NBD_OPT_{LIST,SET}_META_CONTEXT`.
fn parse_meta_queries(data: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let take_u32 = |at: usize| data.get(at..at + 4).map(|b| u32::from_be_bytes(b.try_into().unwrap()) as usize);
    let n = take_u32(0)?;
    let name = data.get(4..4usize.checked_add(n)?)?.to_vec();
    let mut at = 4 + n;
    let count = take_u32(at)?;
    at += 4;
    // Each query takes at least four bytes: a count beyond the data is malformed, not a reason
    // to reserve memory.
    if count > (data.len() - at) / 4 {
        return None;
    }
    let mut queries = Vec::with_capacity(count);
    for _ in 0..count {
        let len = take_u32(at)?;
        queries.push(data.get(at + 4..(at + 4).checked_add(len)?)?.to_vec());
        at += 4 + len;
    }
    (at == data.len()).then_some((name, queries))
}

/// Writes one structured reply chunk, the last of its request.
fn structured_chunk(s: &mut impl Write, kind: u16, cookie: u64, payload: &[&[u8]]) -> io::Result<()> {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    let mut head = [0u8; 20];
    head[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    head[4..6].copy_from_slice(&REPLY_FLAG_DONE.to_be_bytes());
    head[6..8].copy_from_slice(&kind.to_be_bytes());
    head[8..16].copy_from_slice(&cookie.to_be_bytes());
    head[16..20].copy_from_slice(&(len as u32).to_be_bytes());
    s.write_all(&head)?;
    for p in payload {
        s.write_all(p)?;
    }
    Ok(())
}

/// Answers a request: an error, or success with the data of a read at `offset` (structured
/// replies: `OFFSET_DATA`, `NONE` or `ERROR`; simple replies otherwise).
fn answer(s: &mut impl Write, session: Session, error: u32, cookie: u64, offset: u64, data: &[u8]) -> io::Result<()> {
    if !session.structured {
        return simple_reply(s, error, cookie, data);
    }
    if error != 0 {
        let mut p = error.to_be_bytes().to_vec();
        p.extend_from_slice(&0u16.to_be_bytes());
        return structured_chunk(s, REPLY_TYPE_ERROR, cookie, &[&p]);
    }
    if data.is_empty() {
        return structured_chunk(s, REPLY_TYPE_NONE, cookie, &[]);
    }
    structured_chunk(s, REPLY_TYPE_OFFSET_DATA, cookie, &[&offset.to_be_bytes(), data])
}

/// The block status payload for `len` bytes at `offset`: the context id and (length, flags)
/// descriptors, clamped to the request, adjacent runs of one kind merged.
fn block_status_payload(export: &dyn Export, offset: u64, len: u32, one: bool) -> Vec<u8> {
    let mut p = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
    let mut runs: Vec<Extent> = Vec::new();
    let mut covered = 0u32;
    for e in export.extents(offset, len) {
        let length = e.length.min(len - covered);
        if length == 0 {
            break;
        }
        covered += length;
        match runs.last_mut() {
            Some(last) if last.hole == e.hole => last.length += length,
            _ => runs.push(Extent { length, hole: e.hole }),
        }
        if covered == len {
            break;
        }
    }
    if runs.is_empty() {
        runs.push(Extent { length: len, hole: false });
    }
    runs.truncate(if one { 1 } else { MAX_EXTENTS });
    for r in runs {
        p.extend_from_slice(&r.length.to_be_bytes());
        p.extend_from_slice(&(if r.hole { STATE_HOLE | STATE_ZERO } else { 0 }).to_be_bytes());
    }
    p
}

fn simple_reply(s: &mut impl Write, error: u32, cookie: u64, data: &[u8]) -> io::Result<()> {
    let mut head = [0u8; 16];
    head[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    head[4..8].copy_from_slice(&error.to_be_bytes());
    head[8..16].copy_from_slice(&cookie.to_be_bytes());
    s.write_all(&head)?;
    if error == 0 && !data.is_empty() {
        s.write_all(data)?;
    }
    Ok(())
}

fn transmission(s: TcpStream, export: &dyn Export, session: Session) -> io::Result<()> {
    let mut r = io::BufReader::new(s.try_clone()?);
    let mut w = io::BufWriter::with_capacity(1 << 20, s);
    let size = export.size();
    loop {
        w.flush()?;
        if read_u32(&mut r)? != REQUEST_MAGIC {
            return Err(bad("bad request magic"));
        }
        let flags = read_u16(&mut r)?;
        let cmd = read_u16(&mut r)?;
        let cookie = read_u64(&mut r)?;
        let offset = read_u64(&mut r)?;
        let len = read_u32(&mut r)?;
        let in_range = offset.checked_add(len as u64).is_some_and(|end| end <= size);
        match cmd {
            CMD_READ => {
                if len > MAX_REQUEST || !in_range {
                    answer(&mut w, session, EINVAL, cookie, offset, &[])?;
                    continue;
                }
                let mut buf = vec![0u8; len as usize];
                match export.read_at(offset, &mut buf) {
                    Ok(()) => answer(&mut w, session, 0, cookie, offset, &buf)?,
                    Err(e) => {
                        tracing::error!("NBD read of {len} bytes at offset {offset} failed: {e}");
                        answer(&mut w, session, EIO, cookie, offset, &[])?;
                    }
                }
            }
            CMD_BLOCK_STATUS => {
                if !session.base_allocation || len == 0 || !in_range {
                    answer(&mut w, session, EINVAL, cookie, offset, &[])?;
                    continue;
                }
                let payload = block_status_payload(export, offset, len, flags & CMD_FLAG_REQ_ONE != 0);
                structured_chunk(&mut w, REPLY_TYPE_BLOCK_STATUS, cookie, &[&payload])?;
            }
            CMD_WRITE => {
                if len > MAX_REQUEST {
                    return Err(bad("write request too large"));
                }
                let mut data = vec![0u8; len as usize];
                r.read_exact(&mut data)?;
                let err = if !export.writable() {
                    EPERM
                } else if !in_range {
                    ENOSPC
                } else {
                    match export.write_at(offset, &data) {
                        Ok(()) => 0,
                        Err(e) => {
                            tracing::error!("NBD write of {len} bytes at offset {offset} failed: {e}");
                            EIO
                        }
                    }
                };
                answer(&mut w, session, err, cookie, offset, &[])?;
            }
            CMD_FLUSH => {
                let err = match export.flush() {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::error!("NBD flush failed: {e}");
                        EIO
                    }
                };
                answer(&mut w, session, err, cookie, offset, &[])?;
            }
            CMD_DISC => {
                w.flush()?;
                return Ok(());
            }
            _ => answer(&mut w, session, EINVAL, cookie, offset, &[])?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Mem(Mutex<Vec<u8>>, bool);
    impl Export for Mem {
        fn size(&self) -> u64 {
            self.0.lock().unwrap().len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
            if offset == 4096 {
                return Err("damaged".into());
            }
            let d = self.0.lock().unwrap();
            buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
        fn writable(&self) -> bool {
            self.1
        }
        fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), String> {
            self.0.lock().unwrap()[offset as usize..offset as usize + data.len()].copy_from_slice(data);
            Ok(())
        }
    }

    fn request(s: &mut TcpStream, cmd: u16, cookie: u64, offset: u64, len: u32) {
        let mut b = REQUEST_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&cmd.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        s.write_all(&b).unwrap();
    }

    fn reply(s: &mut TcpStream) -> (u32, u64) {
        assert_eq!(read_u32(s).unwrap(), SIMPLE_REPLY_MAGIC);
        (read_u32(s).unwrap(), read_u64(s).unwrap())
    }

    #[test]
    fn meta_context_queries_are_parsed_and_hostile_counts_refused() {
        let mut d = 4u32.to_be_bytes().to_vec();
        d.extend_from_slice(b"disk");
        d.extend_from_slice(&2u32.to_be_bytes());
        for q in [&b"base:allocation"[..], b"qemu:dirty-bitmap:x"] {
            d.extend_from_slice(&(q.len() as u32).to_be_bytes());
            d.extend_from_slice(q);
        }
        let (name, queries) = parse_meta_queries(&d).unwrap();
        assert_eq!(name, b"disk");
        assert_eq!(queries, [b"base:allocation".to_vec(), b"qemu:dirty-bitmap:x".to_vec()]);
        // Trailing bytes, a count beyond the data, lengths past the end: refused.
        let mut longer = d.clone();
        longer.push(0);
        assert!(parse_meta_queries(&longer).is_none());
        let mut huge = 0u32.to_be_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_meta_queries(&huge).is_none());
        let mut past = 0u32.to_be_bytes().to_vec();
        past.extend_from_slice(&1u32.to_be_bytes());
        past.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_meta_queries(&past).is_none());
        assert!(parse_meta_queries(&u32::MAX.to_be_bytes()).is_none());
    }

    /// Handshake with NBD_OPT_GO, a good read, a failing read (EIO, the connection survives),
    /// a refused write on a read-only export, an out-of-range read, and a clean disconnect.
    #[test]
    fn go_read_error_and_disconnect() {
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let export = Mem(Mutex::new(data.clone()), false);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::scope(|scope| {
            let export = &export;
            scope.spawn(move || {
                let (s, _) = listener.accept().unwrap();
                handle(s, "disk", export).unwrap();
            });
            let mut c = TcpStream::connect(addr).unwrap();
            assert_eq!(read_u64(&mut c).unwrap(), NBDMAGIC);
            assert_eq!(read_u64(&mut c).unwrap(), IHAVEOPT);
            assert_eq!(read_u16(&mut c).unwrap() & FLAG_FIXED_NEWSTYLE, FLAG_FIXED_NEWSTYLE);
            c.write_all(&3u32.to_be_bytes()).unwrap();
            let mut opt = IHAVEOPT.to_be_bytes().to_vec();
            opt.extend_from_slice(&OPT_GO.to_be_bytes());
            let mut body = 4u32.to_be_bytes().to_vec();
            body.extend_from_slice(b"disk");
            body.extend_from_slice(&0u16.to_be_bytes());
            opt.extend_from_slice(&(body.len() as u32).to_be_bytes());
            opt.extend_from_slice(&body);
            c.write_all(&opt).unwrap();
            let mut saw_size = None;
            loop {
                assert_eq!(read_u64(&mut c).unwrap(), REPLY_MAGIC);
                assert_eq!(read_u32(&mut c).unwrap(), OPT_GO);
                let kind = read_u32(&mut c).unwrap();
                let len = read_u32(&mut c).unwrap();
                let mut d = vec![0u8; len as usize];
                c.read_exact(&mut d).unwrap();
                if kind == REP_INFO && d[0..2] == INFO_EXPORT.to_be_bytes() {
                    saw_size = Some(u64::from_be_bytes(d[2..10].try_into().unwrap()));
                    let flags = u16::from_be_bytes(d[10..12].try_into().unwrap());
                    assert_ne!(flags & TFLAG_READ_ONLY, 0);
                }
                if kind == REP_ACK {
                    break;
                }
            }
            assert_eq!(saw_size, Some(8192));
            request(&mut c, CMD_READ, 7, 100, 50);
            assert_eq!(reply(&mut c), (0, 7));
            let mut got = vec![0u8; 50];
            c.read_exact(&mut got).unwrap();
            assert_eq!(got, &data[100..150]);
            request(&mut c, CMD_READ, 8, 4096, 10);
            assert_eq!(reply(&mut c), (EIO, 8));
            request(&mut c, CMD_READ, 9, 8000, 500);
            assert_eq!(reply(&mut c), (EINVAL, 9));
            request(&mut c, CMD_WRITE, 10, 0, 3);
            c.write_all(b"abc").unwrap();
            assert_eq!(reply(&mut c), (EPERM, 10));
            request(&mut c, CMD_READ, 11, 0, 3);
            assert_eq!(reply(&mut c), (0, 11));
            let mut got = vec![0u8; 3];
            c.read_exact(&mut got).unwrap();
            assert_eq!(got, &data[0..3]);
            request(&mut c, CMD_DISC, 12, 0, 0);
        });
    }
}
