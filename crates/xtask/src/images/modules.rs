//! Kernel modules for the initramfs, resolved from the kernel package itself.
//!
//! Debian's kernel packages do not ship `modules.dep` (depmod writes it at install time), and this machine has
//! no `modinfo`, so the dependencies come from where depmod reads them: the `.modinfo` ELF section of each
//! module (`depends=a,b` and `softdep=pre: alias`). A small ELF reader handles both byte orders (x86_64 is
//! little-endian, s390x big-endian). The result is a load order, dependencies first, for plain `insmod`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The modules of one unpacked kernel package (`lib/modules/<version>/`), indexed by module name.
pub struct ModuleTree {
    root: PathBuf,
    /// Module name (with `-` written as `_`, as the kernel names them) to its path relative to `root`.
    paths_by_name: BTreeMap<String, PathBuf>,
    /// Names of modules built into the kernel image (from `modules.builtin`).
    builtin: BTreeSet<String>,
}

/// One module to put into the initramfs, in load order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModule {
    pub name: String,
    pub path: PathBuf,
}

impl ModuleTree {
    /// Indexes `root` (the `lib/modules/<version>` directory of an unpacked kernel package).
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        let mut paths_by_name = BTreeMap::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            let directory = root.join(&relative);
            for entry in
                std::fs::read_dir(&directory).with_context(|| format!("cannot list {}", directory.display()))?
            {
                let entry = entry.with_context(|| format!("cannot list {}", directory.display()))?;
                let file_type = entry.file_type().with_context(|| format!("cannot stat {}", entry.path().display()))?;
                let child = relative.join(entry.file_name());
                if file_type.is_dir() {
                    pending.push(child);
                } else if let Some(name) = module_name_of(&child) {
                    paths_by_name.insert(name, child);
                }
            }
        }
        if paths_by_name.is_empty() {
            bail!("no kernel modules (*.ko) under {}", root.display());
        }
        let builtin_list = root.join("modules.builtin");
        let builtin = match std::fs::read_to_string(&builtin_list) {
            Ok(text) => text.lines().filter_map(|line| module_name_of(Path::new(line))).collect(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", builtin_list.display())),
        };
        Ok(Self { root: root.to_path_buf(), paths_by_name, builtin })
    }

    /// The absolute path of a resolved module.
    pub fn absolute_path(&self, module: &ResolvedModule) -> PathBuf {
        self.root.join(&module.path)
    }

    /// Resolves `wanted` (module names; built-in ones are skipped) and everything they depend on, into a load
    /// order with dependencies first. Soft dependencies (`softdep=pre: crypto-crc32c`) are resolved through
    /// module aliases, preferring the portable `*_generic` implementation.
    pub fn resolve(&self, wanted: &[&str]) -> anyhow::Result<Vec<ResolvedModule>> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        let mut aliases: Option<BTreeMap<String, BTreeSet<String>>> = None;
        for name in wanted {
            let name = normalize(name);
            if !self.paths_by_name.contains_key(&name) {
                if self.builtin.contains(&name) {
                    continue;
                }
                bail!("kernel module {name} is neither in the package nor built into the kernel");
            }
            self.visit(&name, &mut Vec::new(), &mut done, &mut order, &mut aliases)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<ResolvedModule>,
        aliases: &mut Option<BTreeMap<String, BTreeSet<String>>>,
    ) -> anyhow::Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if stack.iter().any(|entry| entry == name) {
            bail!("kernel module dependency cycle: {} -> {name}", stack.join(" -> "));
        }
        let path = self.paths_by_name.get(name).with_context(|| {
            format!("kernel module {name} (needed by {}) is not in the package", stack.join(" -> "))
        })?;
        let info = read_modinfo(&self.root.join(path))?;
        let mut dependencies = BTreeSet::new();
        for value in info.iter().filter(|(key, _)| key == "depends").map(|(_, value)| value) {
            dependencies.extend(value.split(',').filter(|dependency| !dependency.is_empty()).map(normalize));
        }
        for value in info.iter().filter(|(key, _)| key == "softdep").map(|(_, value)| value) {
            for soft in value.split_whitespace().filter(|word| !word.ends_with(':')) {
                // A soft dependency that is not a module of the package is built in, or optional.
                if let Some(module) = self.resolve_soft_dependency(soft, aliases)? {
                    dependencies.insert(module);
                }
            }
        }
        stack.push(name.to_owned());
        for dependency in dependencies.iter().filter(|dependency| !self.builtin.contains(*dependency)) {
            self.visit(dependency, stack, done, order, aliases)?;
        }
        stack.pop();
        done.insert(name.to_owned());
        order.push(ResolvedModule { name: name.to_owned(), path: path.clone() });
        Ok(())
    }

    fn resolve_soft_dependency(
        &self,
        soft: &str,
        aliases: &mut Option<BTreeMap<String, BTreeSet<String>>>,
    ) -> anyhow::Result<Option<String>> {
        let soft_name = normalize(soft);
        if self.paths_by_name.contains_key(&soft_name) {
            return Ok(Some(soft_name));
        }
        if aliases.is_none() {
            *aliases = Some(self.alias_index()?);
        }
        let Some(candidates) = aliases.as_ref().and_then(|index| index.get(soft)) else {
            return Ok(None);
        };
        let generic = candidates.iter().find(|candidate| candidate.ends_with("_generic"));
        Ok(generic.or_else(|| candidates.iter().next()).cloned())
    }

    /// Every exact (wildcard-free) alias of every module in the package.
    fn alias_index(&self) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
        let mut index: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, path) in &self.paths_by_name {
            for (key, value) in read_modinfo(&self.root.join(path))? {
                if key == "alias" && !value.contains(['*', '?', '[']) {
                    index.entry(value).or_default().insert(name.clone());
                }
            }
        }
        Ok(index)
    }
}

/// The kernel's name for a module file (`crc32c-intel.ko` is `crc32c_intel`), or `None` for other files.
fn module_name_of(path: &Path) -> Option<String> {
    let file_name = path.file_name()?.to_str()?;
    file_name.strip_suffix(".ko").map(normalize)
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The `key=value` strings of a module's `.modinfo` section.
pub fn read_modinfo(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let section =
        elf_section(&bytes, ".modinfo").with_context(|| format!("{} is not a usable module", path.display()))?;
    Ok(section
        .split(|byte| *byte == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .filter_map(|entry| entry.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect())
}

/// The contents of the named section of a 64-bit ELF file, either byte order.
fn elf_section<'a>(bytes: &'a [u8], wanted: &str) -> anyhow::Result<&'a [u8]> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    if bytes[4] != 2 {
        bail!("not a 64-bit ELF file (class {})", bytes[4]);
    }
    let big_endian = match bytes[5] {
        1 => false,
        2 => true,
        other => bail!("unknown ELF byte order {other}"),
    };
    let reader = ElfReader { bytes, big_endian };
    let section_table = reader.u64_at(0x28)?;
    let entry_size = u64::from(reader.u16_at(0x3a)?);
    let count = u64::from(reader.u16_at(0x3c)?);
    let names_index = u64::from(reader.u16_at(0x3e)?);
    if entry_size < 64 {
        bail!("ELF section header size {entry_size} is too small");
    }
    let header = |index: u64| -> anyhow::Result<(u32, u64, u64)> {
        let start = section_table
            .checked_add(index.checked_mul(entry_size).context("ELF section index overflow")?)
            .context("ELF section offset overflow")?;
        Ok((reader.u32_at(start)?, reader.u64_at(start + 24)?, reader.u64_at(start + 32)?))
    };
    let (_, names_offset, names_size) = header(names_index)?;
    let names = reader.slice(names_offset, names_size)?;
    for index in 0..count {
        let (name_offset, offset, size) = header(index)?;
        let name_start = usize::try_from(name_offset).context("ELF section name offset overflow")?;
        let name = names.get(name_start..).context("ELF section name out of range")?;
        let name = &name[..name.iter().position(|byte| *byte == 0).unwrap_or(name.len())];
        if name == wanted.as_bytes() {
            return reader.slice(offset, size);
        }
    }
    bail!("no {wanted} section")
}

struct ElfReader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl<'a> ElfReader<'a> {
    fn slice(&self, offset: u64, length: u64) -> anyhow::Result<&'a [u8]> {
        let start = usize::try_from(offset).context("ELF offset overflow")?;
        let end = start.checked_add(usize::try_from(length).context("ELF length overflow")?).context("overflow")?;
        self.bytes.get(start..end).with_context(|| format!("ELF range {start}..{end} is beyond the file"))
    }

    fn array<const N: usize>(&self, offset: u64) -> anyhow::Result<[u8; N]> {
        let slice = self.slice(offset, N as u64)?;
        let mut array = [0; N];
        array.copy_from_slice(slice);
        if self.big_endian {
            array.reverse();
        }
        Ok(array)
    }

    fn u16_at(&self, offset: u64) -> anyhow::Result<u16> {
        Ok(u16::from_le_bytes(self.array(offset)?))
    }

    fn u32_at(&self, offset: u64) -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(self.array(offset)?))
    }

    fn u64_at(&self, offset: u64) -> anyhow::Result<u64> {
        Ok(u64::from_le_bytes(self.array(offset)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal relocatable ELF64 with a section-name table and a `.modinfo` section.
    fn tiny_module(big_endian: bool, modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.modinfo\0";
        let names_offset = 64u64;
        let modinfo_offset = names_offset + names.len() as u64;
        let table_offset = (modinfo_offset + modinfo.len() as u64).div_ceil(8) * 8;
        let put16 = |value: u16| if big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
        let put32 = |value: u32| if big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
        let put64 = |value: u64| if big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
        let mut bytes = vec![0u8; 64];
        bytes[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, if big_endian { 2 } else { 1 }]);
        bytes[0x28..0x30].copy_from_slice(&put64(table_offset));
        bytes[0x3a..0x3c].copy_from_slice(&put16(64));
        bytes[0x3c..0x3e].copy_from_slice(&put16(3));
        bytes[0x3e..0x40].copy_from_slice(&put16(1));
        bytes.extend_from_slice(names);
        bytes.extend_from_slice(modinfo);
        bytes.resize(table_offset as usize, 0);
        for (name, offset, size) in
            [(0u32, 0u64, 0u64), (1, names_offset, names.len() as u64), (11, modinfo_offset, modinfo.len() as u64)]
        {
            let mut header = vec![0u8; 64];
            header[..4].copy_from_slice(&put32(name));
            header[24..32].copy_from_slice(&put64(offset));
            header[32..40].copy_from_slice(&put64(size));
            bytes.extend_from_slice(&header);
        }
        bytes
    }

    #[test]
    fn reads_modinfo_in_both_byte_orders() {
        for big_endian in [false, true] {
            let bytes = tiny_module(big_endian, b"license=GPL\0depends=jbd2,mbcache\0\0softdep=pre: crypto-crc32c\0");
            let section = elf_section(&bytes, ".modinfo").unwrap();
            assert!(section.starts_with(b"license=GPL"));
        }
        assert!(elf_section(b"not an elf file at all, clearly not one, no, no, no, no, no, no, no", ".x").is_err());
        let truncated = &tiny_module(false, b"depends=\0")[..100];
        assert!(elf_section(truncated, ".modinfo").is_err());
    }

    #[test]
    fn resolves_dependencies_first_and_soft_dependencies_by_alias() {
        let directory = std::env::temp_dir().join(format!("steward-modules-test-{}", std::process::id()));
        let kernel = directory.join("kernel");
        std::fs::create_dir_all(&kernel).unwrap();
        let modules: [(&str, &[u8]); 5] = [
            ("ext4.ko", b"depends=jbd2,mbcache\0softdep=pre: crypto-crc32c\0"),
            ("jbd2.ko", b"depends=\0"),
            ("mbcache.ko", b"depends=\0"),
            ("crc32c_generic.ko", b"alias=crypto-crc32c\0alias=crc32c\0depends=\0"),
            ("crc32c-intel.ko", b"alias=crypto-crc32c\0depends=\0"),
        ];
        for (file, modinfo) in modules {
            std::fs::write(kernel.join(file), tiny_module(false, modinfo)).unwrap();
        }
        std::fs::write(directory.join("modules.builtin"), "kernel/fs/mbcache.ko\n").unwrap();
        let tree = ModuleTree::open(&directory).unwrap();
        let names: Vec<String> = tree.resolve(&["ext4"]).unwrap().into_iter().map(|module| module.name).collect();
        // mbcache is listed as built in, so it is skipped; crc32c resolves to the generic implementation.
        assert_eq!(names, ["crc32c_generic", "jbd2", "ext4"]);
        assert!(tree.resolve(&["nonexistent"]).is_err());
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
