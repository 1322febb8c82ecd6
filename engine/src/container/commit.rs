//! `commit`: a new image from a container's changes. The overlay upper directory becomes one layer (overlay
//! whiteouts turned back into OCI `.wh.` entries by [`super::rootfs::layer_tar`]); the image config is the
//! container's (Cmd, Entrypoint, Env, WorkingDir, User, Labels, Healthcheck) with `-c` changes applied on top, as docker does.
//! A running container is paused while its upper directory is read (docker's default, `--pause=false` to
//! skip), so the layer is a consistent snapshot.

use std::fs::File;
use std::io::BufWriter;

use super::rootfs::layer_tar;
use super::store::ContainerStore;
use super::{io_err, Result};
use crate::digest::Digest;
use crate::image::{change, History, Image, ImageStore};
use crate::reference::Reference;

/// `-m`, `-a`, `-c` and the optional name of `commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub message: Option<String>,
    pub author: Option<String>,
    pub changes: Vec<String>,
    pub reference: Option<String>,
    /// Freeze the container while its changes are read (docker's `--pause`, default true).
    pub pause: bool,
}

pub fn commit(store: &ContainerStore, images: &ImageStore, id: &str, opts: &CommitOptions) -> Result<Image> {
    let c = store.load(id)?;
    let image_id: Digest = c.image_id.parse().map_err(|e: crate::digest::InvalidDigest| super::Error::Corrupt {
        path: store.dir(id).join("config.json"),
        message: e.to_string(),
    })?;
    let parent = images.get(&image_id)?;
    let reference = opts.reference.as_deref().map(Reference::parse).transpose()?;
    let mut config = parent.config.config.clone();
    config.cmd = c.config.cmd.clone();
    config.entrypoint = c.config.entrypoint.clone();
    config.env = c.config.env.clone();
    config.working_dir = c.config.working_dir.clone();
    config.user = c.config.user.clone();
    config.labels = c.config.labels.clone();
    if c.config.healthcheck.is_some() {
        config.healthcheck = c.config.healthcheck.clone();
    }
    for ch in &opts.changes {
        change::apply(&mut config, ch).map_err(crate::image::Error::from)?;
    }
    let staging = store.root().staging_dir("commit").map_err(io_err("cannot create a staging directory"))?;
    let tar_path = staging.path().join("layer.tar");
    {
        let file = File::create(&tar_path).map_err(io_err(format!("cannot create {}", tar_path.display())))?;
        let _paused = if opts.pause { Some(super::pause::PauseGuard::new(store, id)?) } else { None };
        layer_tar(&store.dir(id).join("upper"), BufWriter::new(file))?;
    }
    let mut argv = vec![c.path.clone()];
    argv.extend(c.args.iter().cloned());
    let history = History {
        created: Some(crate::image::now_rfc3339()),
        author: opts.author.clone(),
        created_by: Some(argv.join(" ")),
        comment: opts.message.clone(),
        empty_layer: false,
    };
    Ok(images.create_image(Some(&parent), Some(&tar_path), config, history, reference.as_ref())?)
}
