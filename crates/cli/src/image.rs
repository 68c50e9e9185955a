//! Building the bootable GPT + FAT32 disk image.
