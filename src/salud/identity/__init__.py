"""The person registry (padrón): persons keyed by CURP, affiliations (derechohabiencia)."""
