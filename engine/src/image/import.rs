//! `engine import`: a root filesystem tar (plain or gzip, from a file or stdin) becomes a one-layer image.
//!
//! The input is copied to a staging file while being hashed (its diff ID), unpacked into a staging directory —
//! which also proves the tar is whole and safe — and only then moved into the store and indexed. A truncated,
//! corrupt or hostile tar fails before anything is visible; a crash leaves only staging files, removed later.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};

use super::{io_err, layer, now_rfc3339, store, Error, History, Image, ImageConfig, ImageStore, Result, RunConfig};
use crate::digest::Hashing;
use crate::reference::Reference;

/// What `engine import` was asked to do.
#[derive(Debug, Default)]
pub struct ImportOptions {
    pub name: Option<Reference>,
    /// `-m`: the history comment; defaults to docker's `Imported from <source>`.
    pub message: Option<String>,
    /// The execution config of the new image (`--change` instructions applied by the caller).
    pub run_config: RunConfig,
}

impl ImageStore {
    /// Imports the tar read from `input`; `source` names it for the history ("-" for stdin).
    pub fn import(&self, input: impl Read, source: &str, options: ImportOptions) -> Result<Image> {
        let staging = self.root.staging_dir("import").map_err(io_err("cannot create a staging directory"))?;
        let tar_path = staging.path().join("layer.tar");
        let file = File::create(&tar_path).map_err(io_err(format!("cannot write {}", tar_path.display())))?;
        let mut hashing = Hashing::new(BufWriter::with_capacity(256 * 1024, file));
        let mut reader = layer::decompressed(input)?;
        io::copy(&mut reader, &mut hashing).map_err(|e| Error::Layer(layer::Error::Corrupt(e)))?;
        let (diff_id, size, writer) = hashing.finish();
        writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|mut f| f.flush().and_then(|_| f.sync_all()))
            .map_err(io_err(format!("cannot write {}", tar_path.display())))?;
        if size == 0 {
            return Err(Error::Layer(layer::Error::Corrupt(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{source} is empty, not a tar archive"),
            ))));
        }
        let fs_dir = staging.path().join("fs");
        std::fs::create_dir(&fs_dir).map_err(io_err("cannot create a staging directory"))?;
        let tar = File::open(&tar_path).map_err(io_err(format!("cannot read {}", tar_path.display())))?;
        let stats = layer::unpack(io::BufReader::with_capacity(256 * 1024, tar), &fs_dir)?;
        if stats.entries == 0 {
            return Err(Error::Layer(layer::Error::Corrupt(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{source} is not a tar archive (no entries found)"),
            ))));
        }
        let lease = store::Lease::new(&self.root)?;
        lease.add(&diff_id)?;
        self.blobs.put_file_as(&tar_path, &diff_id)?;
        self.commit_layer_dir(&fs_dir, &diff_id)?;
        let created = now_rfc3339();
        let config = ImageConfig {
            created: Some(created.clone()),
            architecture: "amd64".to_owned(),
            os: "linux".to_owned(),
            config: options.run_config,
            rootfs: super::RootFs { kind: "layers".to_owned(), diff_ids: vec![diff_id.to_string()] },
            history: vec![History {
                created: Some(created),
                comment: Some(options.message.unwrap_or_else(|| format!("Imported from {source}"))),
                ..History::default()
            }],
            ..ImageConfig::default()
        };
        let layer = super::descriptor(oci_spec::image::MediaType::ImageLayer, size, &diff_id)?;
        let image = self.commit_image(config, vec![layer], options.name.as_ref())?;
        drop(lease);
        Ok(image)
    }
}
