pub mod fake_alpaca;
pub mod openapi;
