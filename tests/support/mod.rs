#![allow(dead_code)]

pub mod certs;
pub mod client;
pub mod proxy;
pub mod upstream;
pub mod binary;
