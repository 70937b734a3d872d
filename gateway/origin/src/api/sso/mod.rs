//! Single sign-on over HTTP: the administrators' connection API and the browser's
//! sign-in through a connection.

pub mod admin;
pub mod connections;
pub mod signin;
