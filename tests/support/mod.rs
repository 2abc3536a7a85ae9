#![allow(dead_code)]

pub mod app;
pub mod binary;
pub mod certs;
pub mod client;
pub mod feeds;
pub mod h2raw;
pub mod h2ws;
pub mod json_upstream;
pub mod nginx;
pub mod proxy;
pub mod publish;
pub mod raw;
pub mod recorder;
pub mod redis;
pub mod upstream;
pub mod ws_app;
pub mod ws_upstream;
