//! Errors of running a job: what went wrong and what to do about it. A step that fails is not an error (it is
//! a failed job); these are the problems that keep a job from running at all.

/// Why a job could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{origin}: invalid variable `{text}`: {hint}")]
    BadVariable { origin: String, text: String, hint: String },
    #[error("job `{job}` has no docker executor: only `docker:` jobs run locally (machine and macos executors are not supported by `runner exec`)")]
    UnsupportedExecutor { job: String },
    #[error("cannot pull image {image}: {message} (pull it with `engine pull {image}` or check the name)")]
    Pull { image: String, message: String },
    #[error("cannot start the {role} container ({image}): {source}")]
    Container {
        role: &'static str,
        image: String,
        #[source]
        source: engine::container::Error,
    },
    #[error("container engine: {0}")]
    Engine(#[from] engine::container::Error),
    #[error("engine state directory: {0}")]
    Root(#[from] engine::root::Error),
    #[error("image store: {0}")]
    Image(#[from] engine::image::Error),
    #[error("cache key `{key}`: {hint}")]
    CacheKey { key: String, hint: String },
    #[error("{field}: `{value}`: {hint}")]
    StepInput { field: String, value: String, hint: String },
    #[error("coordinator: {0}")]
    Remote(String),
    #[error("{0}")]
    RemoteDocker(#[from] super::remote_docker::RemoteDockerError),
    #[error("checkout: {0}")]
    Checkout(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}
