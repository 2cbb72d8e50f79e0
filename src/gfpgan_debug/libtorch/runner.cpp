// gfpgan_runner: what a C++ deployment of GFPGAN does, and nothing more.
//
// Loads a TorchScript file (torch.jit.script of gfpgan_debug.export.DeployModel), then, in ONE process, as a
// camera loop would, runs forward on every input given and writes every output back as a .npy file that
// numpy reads bit for bit:
//
//   gfpgan_runner --model M.pt --out DIR [--device cpu|cuda] [--threads N] [--preprocess-only] INPUT...
//
//   INPUT ending in .npy  a float32 (1, 3, S, S) tensor, C order, little-endian (numpy.save writes these)
//   any other INPUT       an image file, preprocessed here with OpenCV exactly as the post did:
//                         cv::imread (BGR, 8 bit) -> resize to S x S (INTER_LINEAR, only when needed)
//                         -> BGR to RGB -> float / 255 -> (x - 0.5) / 0.5 -> (1, 3, S, S)
//
//   DIR/frame_00000/input.npy                 the tensor fed to the model (image inputs only)
//   DIR/frame_00000/image.npy, rgb_8.npy, …   the model's outputs, named as on the Python side
//   stdout: "frame <i> forward_ms <t>"        the time of forward + copying the outputs to the CPU
//
// Exit status 0 on success, 2 with one line on stderr naming the file and the problem otherwise.
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <bit>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, ".npy files here are written little-endian");

[[noreturn]] void fail(const std::string& message) {
  std::cerr << "gfpgan_runner: " << message << std::endl;
  std::exit(2);
}

// ---------------------------------------------------------------------------------------------------------
// .npy, version 1.0: magic "\x93NUMPY", 2 version bytes, uint16 header length, a Python-dict header padded
// with spaces to a multiple of 64 bytes and ended by '\n', then the raw data.
// ---------------------------------------------------------------------------------------------------------

torch::Tensor read_npy(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) fail(path.string() + ": cannot open");
  std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) fail(path.string() + ": not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_length = 0, offset = 0;
  if (major == 1) {
    header_length = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else {
    if (bytes.size() < 12) fail(path.string() + ": truncated .npy header");
    std::memcpy(&header_length, bytes.data() + 8, 4);  // uint32, little-endian (versions 2 and 3)
    offset = 12;
  }
  if (offset + header_length > bytes.size()) fail(path.string() + ": truncated .npy header");
  const std::string header(bytes.data() + offset, header_length);
  if (header.find("'descr': '<f4'") == std::string::npos) fail(path.string() + ": dtype must be float32 ('<f4')");
  if (header.find("'fortran_order': False") == std::string::npos) fail(path.string() + ": must be C order");

  std::vector<int64_t> shape;
  const size_t open = header.find('(', header.find("'shape'")), close = header.find(')', open);
  if (open == std::string::npos || close == std::string::npos) fail(path.string() + ": no shape in .npy header");
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  for (std::string dim; std::getline(dims, dim, ',');) {
    if (dim.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(dim));
  }
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  const size_t data_offset = offset + header_length;
  if (bytes.size() - data_offset != static_cast<size_t>(count) * sizeof(float))
    fail(path.string() + ": data size does not match the shape in the header");
  torch::Tensor tensor = torch::empty(shape, torch::kFloat);
  std::memcpy(tensor.data_ptr<float>(), bytes.data() + data_offset, count * sizeof(float));
  return tensor;
}

void write_npy(const fs::path& path, torch::Tensor tensor) {
  tensor = tensor.to(torch::kCPU, torch::kFloat).contiguous();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (int64_t d : tensor.sizes()) header += std::to_string(d) + ", ";
  header += "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream file(path, std::ios::binary);
  if (!file) fail(path.string() + ": cannot write");
  const uint16_t length = static_cast<uint16_t>(header.size());
  file.write("\x93NUMPY\x01\x00", 8);
  file.write(reinterpret_cast<const char*>(&length), 2);
  file.write(header.data(), header.size());
  file.write(reinterpret_cast<const char*>(tensor.data_ptr<float>()), tensor.numel() * sizeof(float));
  if (!file) fail(path.string() + ": write failed");
}

// ---------------------------------------------------------------------------------------------------------
// The post's preprocessing, in OpenCV and LibTorch
// ---------------------------------------------------------------------------------------------------------

torch::Tensor preprocess(const fs::path& path, int64_t size) {
  cv::Mat bgr = cv::imread(path.string(), cv::IMREAD_COLOR);  // 8-bit, 3 channels, BGR
  if (bgr.empty()) fail(path.string() + ": not an image OpenCV can read");
  if (bgr.rows != size || bgr.cols != size) {
    cv::Mat resized;
    cv::resize(bgr, resized, cv::Size(size, size), 0, 0, cv::INTER_LINEAR);
    bgr = resized;
  }
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);  // a byte shuffle: exact
  torch::Tensor hwc = torch::from_blob(rgb.data, {size, size, 3}, torch::kUInt8).clone();
  // float32 arithmetic in the same order as the Python side: x / 255, then (x - 0.5) / 0.5
  torch::Tensor chw = hwc.permute({2, 0, 1}).to(torch::kFloat).div(255.0);
  return chw.sub(0.5).div(0.5).unsqueeze(0).contiguous();
}

// ---------------------------------------------------------------------------------------------------------

struct Options {
  fs::path model, out;
  std::string device = "cpu";
  int threads = 0;  // 0: LibTorch's default
  bool preprocess_only = false;
  int64_t size = 512;
  std::vector<fs::path> inputs;
};

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--model") options.model = value();
    else if (arg == "--out") options.out = value();
    else if (arg == "--device") options.device = value();
    else if (arg == "--threads") options.threads = std::stoi(value());
    else if (arg == "--size") options.size = std::stoll(value());
    else if (arg == "--preprocess-only") options.preprocess_only = true;
    else if (arg.starts_with("--")) fail("unknown option " + arg);
    else options.inputs.push_back(arg);
  }
  if (options.out.empty()) fail("--out DIR is required");
  if (options.model.empty() && !options.preprocess_only) fail("--model M.pt is required");
  if (options.inputs.empty()) fail("no inputs given");
  return options;
}

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  if (options.threads > 0) at::set_num_threads(options.threads);

  torch::jit::script::Module module;
  torch::Device device(torch::kCPU);
  if (!options.preprocess_only) {
    try {
      device = torch::Device(options.device);
      module = torch::jit::load(options.model.string(), device);
    } catch (const c10::Error& error) {
      fail(options.model.string() + ": cannot load on " + options.device + ": " + error.what_without_backtrace());
    }
    module.eval();
  }

  c10::InferenceMode inference;
  for (size_t i = 0; i < options.inputs.size(); ++i) {
    const fs::path& input = options.inputs[i];
    char name[32];
    std::snprintf(name, sizeof(name), "frame_%05zu", i);
    const fs::path frame_dir = options.out / name;
    fs::create_directories(frame_dir);

    torch::Tensor x;
    if (input.extension() == ".npy") {
      x = read_npy(input);
    } else {
      x = preprocess(input, options.size);
      write_npy(frame_dir / "input.npy", x);
    }
    if (options.preprocess_only) continue;
    if (x.dim() != 4 || x.size(0) != 1 || x.size(1) != 3)
      fail(input.string() + ": expected a (1, 3, S, S) tensor");

    const auto start = std::chrono::steady_clock::now();
    std::vector<torch::Tensor> outputs;
    try {
      auto result = module.forward({x.to(device)}).toTuple();
      outputs.push_back(result->elements()[0].toTensor().to(torch::kCPU));
      for (const torch::Tensor& rgb : result->elements()[1].toTensorVector()) outputs.push_back(rgb.to(torch::kCPU));
    } catch (const c10::Error& error) {
      fail(input.string() + ": forward failed: " + error.what_without_backtrace());
    }
    const double forward_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

    write_npy(frame_dir / "image.npy", outputs[0]);
    for (size_t k = 1; k < outputs.size(); ++k)
      write_npy(frame_dir / ("rgb_" + std::to_string(outputs[k].size(2)) + ".npy"), outputs[k]);
    std::cout << "frame " << i << " forward_ms " << forward_ms << std::endl;
  }
  return 0;
}
