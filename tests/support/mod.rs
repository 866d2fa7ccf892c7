//! Shared by the integration tests that run the engine or its connectors: the real binary on a
//! temporary project, and real HTTP servers on loopback for it to call.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod connector;
pub mod engine;
pub mod marketplace;
pub mod mock_adobe;
pub mod mock_bigcommerce;
pub mod mock_lazada;
pub mod mock_oracle;
pub mod mock_salesforce;
pub mod mock_sap;
pub mod mock_sfcc;
pub mod mock_shopee;
pub mod mock_tiktok;
pub mod nats;
pub mod upstream;
