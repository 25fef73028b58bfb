//! The access-log writer: workers format JSON lines and send them in batches; the control
//! thread appends the batches to the file through a buffer and flushes it every tick, so no
//! worker ever waits on the disk.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Buffer in front of the file.
const BUFFER_BYTES: usize = 64 * 1024;

/// An open access log.
pub struct AccessLog {
    path: PathBuf,
    out: BufWriter<File>,
    dirty: bool,
}

impl AccessLog {
    /// Opens `path` for appending, creating it if missing.
    pub fn open(path: &Path) -> io::Result<AccessLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AccessLog {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(BUFFER_BYTES, file),
            dirty: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a batch of complete lines.
    pub fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        self.dirty = true;
        self.out.write_all(lines)
    }

    /// Pushes buffered lines to the file, if any.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        self.out.flush()
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}
