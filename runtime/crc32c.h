// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
// iSCSI/ext4/LevelDB/TFRecord. Uses the SSE4.2 crc32 instruction when the CPU has it (checked at
// run time) and a portable slicing-by-8 table otherwise; both give identical results.
// Crc32c("123456789") == 0xE3069283.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace roformer {

// Continues a running CRC: Crc32cExtend(Crc32cExtend(0, a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);
inline uint32_t Crc32c(const void* data, size_t n) { return Crc32cExtend(0, data, n); }
inline uint32_t Crc32c(std::string_view s) { return Crc32cExtend(0, s.data(), s.size()); }

// Portable implementation only (for tests that compare the two paths).
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t n);
bool Crc32cHardwareAvailable();

// CRC32C of a whole file, read in large blocks. Throws Error naming the file when unreadable.
uint32_t Crc32cFile(const std::string& path, uint64_t* size = nullptr);

}  // namespace roformer
