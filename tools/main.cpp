// liteattn: the command-line program over the core (demo, verify, bench).
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli_args.hpp"
#include "commands.hpp"
#include "liteattn/error.hpp"

namespace {

constexpr const char* kUsage = R"(usage: liteattn <command> [options]

commands:
  demo    run the synthetic video workload's denoising trajectory with LiteAttention and a
          dense reference at every step; print sparsity, error and time per step
          [--backend auto|cpu|cuda] [--threshold T [--warmup N] | --schedule FILE] [--steps N]
          [--preset default|wan13b-480p|wan14b-480p|wan14b-720p] [--seed S]
          [--frames F] [--height H] [--width W] [--heads N] [--head-dim D] (override the preset)
          [--criterion running|previous] [--order descending|alternate|diagonal_first]
          [--dtype bf16|fp16|fp32] [--threads N] [--tile N (cpu)] [--out FILE.json] [--png FILE.png]
          [--png-head H]
  verify  random shapes (odd lengths included): the CPU reference and the GPU's default kernel
          (or the one --backend names) against the CPU reference and an fp64 dense reference;
          exits 1 on any failure
          [--backend all|cpu|cuda|sm90|sm80] [--cases N] [--seed S]
  bench   dense vs sparse timing for a backend and shape
          [--backend auto|cpu|cuda|sm90|sm80] [--batch B] [--len L] [--heads H] [--head-dim D]
          [--sparsity S] [--repeats N] [--dtype bf16|fp16|fp32] [--seed S] [--out FILE.json]
  evaluate  trajectories of the video workload for every criterion x order x threshold (and
          schedule): sparsity, per-step and final error vs dense, Euler-latent error (issue 6)
          [--backend auto|cpu|cuda] [--preset NAME] [--frames F --height H --width W --heads N]
          [--steps N] [--seed S] [--thresholds -14,-10,...] [--criteria running,previous]
          [--orders descending,alternate,diagonal_first] [--schedules FILE,...]
          [--dtype bf16|fp16|fp32] [--threads N] [--tile N (cpu)] [--out FILE.json] [--md FILE.md]

`liteattn --help` or `liteattn <command> --help` prints this. Bad arguments print one line
naming the argument and exit with code 2.
)";

bool asks_for_help(const std::string& arg) { return arg == "--help" || arg == "-h" || arg == "help"; }

using Command = int (*)(const std::vector<std::string>&);

// The command named `name`, or nullptr.
Command find_command(const std::string& name) {
  if (name == "demo") return liteattn::cli::run_demo;
  if (name == "verify") return liteattn::cli::run_verify;
  if (name == "bench") return liteattn::cli::run_bench;
  if (name == "evaluate") return liteattn::cli::run_evaluate;
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  const Command run = find_command(command);
  if (asks_for_help(command) || (run != nullptr && !args.empty() && asks_for_help(args[0]))) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (run == nullptr) {
    std::fprintf(stderr, "liteattn: unknown command '%s' (expected demo, verify, bench or evaluate)\n", command.c_str());
    return 2;
  }
  try {
    return run(args);
  } catch (const liteattn::cli::UsageError& e) {
    std::fprintf(stderr, "liteattn %s: %s\n", command.c_str(), e.what());
    return 2;
  } catch (const liteattn::ArgumentError& e) {
    std::fprintf(stderr, "liteattn %s: %s\n", command.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "liteattn %s: error: %s\n", command.c_str(), e.what());
    return 1;
  }
}
