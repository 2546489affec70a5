#include <png.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "cli_args.hpp"
#include "commands.hpp"

namespace liteattn::cli {

void write_mask_png(const std::string& path, const std::vector<MaskPanel>& panels, int q_tiles, int k_tiles) {
  constexpr int kGap = 8;              // pixels between panels
  constexpr int kMinPanelPixels = 240; // small masks are scaled up to stay visible
  const int cell = std::max(1, kMinPanelPixels / std::max(q_tiles, k_tiles));
  const int panel_w = k_tiles * cell, panel_h = q_tiles * cell;
  const int width = int(panels.size()) * panel_w + (int(panels.size()) + 1) * kGap, height = panel_h + 2 * kGap;

  std::vector<png_byte> image(std::size_t(width) * height, 128);  // grey background and gaps
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const int x0 = kGap + int(p) * (panel_w + kGap);
    for (int y = 0; y < panel_h; ++y)
      for (int x = 0; x < panel_w; ++x)
        image[std::size_t(kGap + y) * width + x0 + x] = panels[p].kept[std::size_t(y / cell) * k_tiles + x / cell] ? 255 : 0;
  }

  FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) throw UsageError("--png: cannot write '" + path + "'");  // as --out: exit 2
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(file);
    throw std::runtime_error("--png: libpng failed writing '" + path + "'");
  }
  png_init_io(png, file);
  png_set_IHDR(png, info, png_uint_32(width), png_uint_32(height), 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y) png_write_row(png, &image[std::size_t(y) * width]);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(file);
}

}  // namespace liteattn::cli
