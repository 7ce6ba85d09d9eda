//! The `{id}` parameters that several routes share, as the OpenAPI document describes them.
//! Handlers read them with `PathId`; these types are read by utoipa only.

#![allow(dead_code)]

use utoipa::IntoParams;

/// An endpoint's routes: `/v1/endpoints/{id}…`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct EndpointPath {
    /// Endpoint id
    #[param(format = Uuid)]
    id: String,
}

/// An event's routes: `/v1/events/{id}…`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct EventPath {
    /// Event id (as returned by POST /v1/events)
    id: String,
}
