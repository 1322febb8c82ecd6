//! Errors as the Docker Engine API reports them: a status code and a JSON body `{"message": "…"}`. Every
//! engine error maps to docker's status for the same situation (404 for a missing object, 409 for a conflict,
//! 400 for bad input, 304 for a start or stop with nothing to do), so the docker CLI reacts as it does with
//! dockerd — a 404 on create, for instance, makes it pull the image and try again.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::container::Error as ContainerError;
use crate::image::Error as ImageError;
use crate::network::Error as NetworkError;
use crate::volume::Error as VolumeError;

/// An API failure: the HTTP status and docker's message.
#[derive(Debug, thiserror::Error)]
#[error("{message} (HTTP {status})")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

/// The JSON error body docker clients parse (`{"message": …}`).
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = json!({ "message": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(http.status = self.status.as_u16(), "{}", self.message);
        }
        if self.status == StatusCode::NOT_MODIFIED {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        json_error(self.status, &self.message)
    }
}

fn image_status(e: &ImageError) -> StatusCode {
    match e {
        ImageError::NotFound(_) => StatusCode::NOT_FOUND,
        ImageError::Ambiguous(_) | ImageError::Reference(_) => StatusCode::BAD_REQUEST,
        ImageError::InUse { .. } | ImageError::MultipleNames { .. } => StatusCode::CONFLICT,
        // What the client sent is not a usable tar (`docker import` of a corrupt or hostile archive).
        ImageError::Layer(l) if !matches!(l, crate::image::layer::Error::Write { .. }) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn network_status(e: &NetworkError) -> StatusCode {
    match e {
        NetworkError::NotFound(_) => StatusCode::NOT_FOUND,
        NetworkError::NameTaken(_)
        | NetworkError::ActiveEndpoints { .. }
        | NetworkError::AlreadyConnected { .. }
        | NetworkError::Overlap { .. } => StatusCode::CONFLICT,
        NetworkError::Predefined(_) => StatusCode::FORBIDDEN,
        NetworkError::Ambiguous(_)
        | NetworkError::InvalidName(_)
        | NetworkError::NotConnectable(..)
        | NetworkError::NotConnected { .. }
        | NetworkError::IpOnDefault
        | NetworkError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
        NetworkError::UnknownDriver(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn volume_status(e: &VolumeError) -> StatusCode {
    match e {
        VolumeError::NotFound(_) => StatusCode::NOT_FOUND,
        VolumeError::InvalidName(_) => StatusCode::BAD_REQUEST,
        VolumeError::InUse { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<crate::archive::Error> for ApiError {
    fn from(e: crate::archive::Error) -> ApiError {
        use crate::archive::Error as A;
        let status = match &e {
            A::Invalid(_) | A::Escape(_) | A::Missing(_) | A::DigestMismatch { .. } | A::UnknownFormat | A::Read(_) => {
                StatusCode::BAD_REQUEST
            }
            A::Image(ie) => image_status(ie),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<NetworkError> for ApiError {
    fn from(e: NetworkError) -> ApiError {
        ApiError::new(network_status(&e), e.to_string())
    }
}

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> ApiError {
        ApiError::new(volume_status(&e), e.to_string())
    }
}

impl From<ContainerError> for ApiError {
    fn from(e: ContainerError) -> ApiError {
        let status = match &e {
            ContainerError::NotFound(_) => StatusCode::NOT_FOUND,
            ContainerError::Image(ie) => image_status(ie),
            ContainerError::Network(ne) => network_status(ne),
            ContainerError::Volume(ve) => volume_status(ve),
            ContainerError::Ambiguous(_)
            | ContainerError::InvalidName(_)
            | ContainerError::InvalidInput { .. }
            | ContainerError::Reference(_)
            | ContainerError::UnknownUser { .. }
            | ContainerError::UnknownGroup { .. }
            // dockerd answers 400 for a command that cannot be run; the docker CLI turns the message's
            // "executable file not found" / "permission denied" into exit codes 127 / 126.
            | ContainerError::Invoke { .. } => StatusCode::BAD_REQUEST,
            ContainerError::NameInUse { .. } | ContainerError::RemoveRunning(_) | ContainerError::NotRunning(_) => {
                StatusCode::CONFLICT
            }
            ContainerError::AlreadyRunning(_) => StatusCode::NOT_MODIFIED,
            ContainerError::NoSuchPath { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> ApiError {
        ApiError::new(image_status(&e), e.to_string())
    }
}

impl From<crate::reference::Error> for ApiError {
    fn from(e: crate::reference::Error) -> ApiError {
        ApiError::bad_request(e.to_string())
    }
}

impl From<crate::root::Error> for ApiError {
    fn from(e: crate::root::Error) -> ApiError {
        ApiError::internal(e.to_string())
    }
}

impl From<crate::registry::Error> for ApiError {
    fn from(e: crate::registry::Error) -> ApiError {
        use crate::registry::Error as R;
        let status = match &e {
            R::Image(ie) => image_status(ie),
            R::Reference(_) | R::InvalidPlatform(_) => StatusCode::BAD_REQUEST,
            R::ManifestUnknown { .. } => StatusCode::NOT_FOUND,
            R::Unauthorized { .. } | R::Login { .. } => StatusCode::UNAUTHORIZED,
            R::Denied { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_docker_statuses() {
        let e: ApiError = ContainerError::NotFound("x".into()).into();
        assert_eq!((e.status, e.message.as_str()), (StatusCode::NOT_FOUND, "No such container: x"));
        let e: ApiError = ContainerError::Image(ImageError::NotFound("busybox:latest".into())).into();
        assert_eq!((e.status, e.message.as_str()), (StatusCode::NOT_FOUND, "No such image: busybox:latest"));
        let e: ApiError = ContainerError::RemoveRunning("x".into()).into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e: ApiError = ContainerError::AlreadyRunning("x".into()).into();
        assert_eq!(e.status, StatusCode::NOT_MODIFIED);
    }
}
