//! docker's multiplexed stream framing, client side: each frame is an 8-byte header (stream 0 stdin, 1 stdout,
//! 2 stderr; three zero bytes; big-endian u32 length) then that many bytes. Used for attach, exec and logs
//! without a TTY (with one the stream is raw). The server side is `api::attach::frame`.

use std::io::{self, Read, Write};

/// One frame: which stream, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFrame {
    pub stream: u8,
    pub data: Vec<u8>,
}

/// Reads one frame; `None` at a clean end of the stream (between frames). A stream cut inside a frame is an
/// `UnexpectedEof` error.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<StreamFrame>> {
    let mut header = [0u8; 8];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a frame header")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)?;
    Ok(Some(StreamFrame { stream: header[0], data }))
}

/// Copies a multiplexed stream to `stdout` and `stderr` (stream 1 and 2; stdin echoes, 0, go to stdout as
/// docker does) until it ends, flushing after each frame so interleaving is kept.
pub fn demux(r: &mut impl Read, stdout: &mut impl Write, stderr: &mut impl Write) -> io::Result<()> {
    while let Some(frame) = read_frame(r)? {
        if frame.stream == 2 {
            stderr.write_all(&frame.data)?;
            stderr.flush()?;
        } else {
            stdout.write_all(&frame.data)?;
            stdout.flush()?;
        }
    }
    Ok(())
}
