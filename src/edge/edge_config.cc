#include "edge/edge_config.h"
