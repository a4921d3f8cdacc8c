// trustmoe-edge's configuration file (docs/edge.md lists every key;
// deploy/config/edge.toml is a commented example).
#pragma once
