#include "trace/trace-blowfish_hw.h"
