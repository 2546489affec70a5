// Everything a C++ user of liteattn needs.
#pragma once

#include "liteattn/attention.hpp"
#include "liteattn/error.hpp"
#include "liteattn/merge.hpp"
#include "liteattn/numeric.hpp"
#include "liteattn/schedule.hpp"
#include "liteattn/skip_state.hpp"
#include "liteattn/tensor.hpp"
#include "liteattn/types.hpp"
#include "liteattn/workload.hpp"
#include "liteattn/version.hpp"
