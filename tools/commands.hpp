// The subcommands of the liteattn program. Each returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace liteattn::cli {

int run_demo(const std::vector<std::string>& args);
int run_verify(const std::vector<std::string>& args);
int run_bench(const std::vector<std::string>& args);
int run_evaluate(const std::vector<std::string>& args);

// Skip masks of one head at several steps, side by side: kept tiles white, skipped black.
struct MaskPanel {
  int step = 0;
  std::vector<unsigned char> kept;  // q_tiles * k_tiles, row-major
};
void write_mask_png(const std::string& path, const std::vector<MaskPanel>& panels, int q_tiles, int k_tiles);

}  // namespace liteattn::cli
