using System.Runtime.InteropServices;

namespace IoMux.Interop;

/// <summary>What a descriptor refers to, as far as readiness is concerned.</summary>
internal enum DescriptorKind : byte
{
    Other,
    RegularFile,
    Directory,
    Fifo,
    Socket,
    CharacterDevice,
}

/// <summary>Reads st_mode with fstat(2). The offset of st_mode in struct stat differs per OS and
/// architecture, so it is picked here from the headers of each (checked by the layout tests on Linux).</summary>
internal static unsafe class DescriptorProbe
{
    private const int S_IFMT = 0xF000, S_IFIFO = 0x1000, S_IFCHR = 0x2000, S_IFDIR = 0x4000, S_IFREG = 0x8000, S_IFSOCK = 0xC000;

    /// <summary>Offset and width of st_mode: Linux x86-64 has st_dev, st_ino, st_nlink (8 bytes each) first;
    /// the generic Linux layout (arm64, riscv64) puts st_mode after st_ino; FreeBSD 12+ matches x86-64 Linux
    /// with a 16-bit mode; macOS (64-bit inode layout) has a 32-bit st_dev then a 16-bit mode; illumos
    /// amd64 has 64-bit st_dev and st_ino then a 32-bit mode.</summary>
    internal static readonly (int Offset, int Width) ModeField =
        OperatingSystem.IsLinux() ? (RuntimeInformation.ProcessArchitecture == Architecture.X64 ? (24, 4) : (16, 4))
        : OperatingSystem.IsFreeBSD() ? (24, 2)
        : OperatingSystem.IsMacOS() ? (4, 2)
        : Platform.IsIllumos ? (16, 4)
        : (8, 2); // NetBSD/OpenBSD: 32-bit st_dev, 32-bit st_mode after it on OpenBSD; best effort.

    /// <summary>Offsets of the 64-bit st_size and of st_mtim's seconds (a 64-bit time_t). st_size: 48 on Linux
    /// (x86-64 and the generic layout alike), after four timespecs on FreeBSD (112) and macOS (96), right after
    /// st_rdev on illumos amd64 (40). st_mtim: after st_atim at 72 on Linux (both layouts line up there), the second
    /// of the four timespecs on FreeBSD (64) and macOS (48), after st_size and st_atim on illumos amd64 (64).</summary>
    private static readonly (int Size, int Modified) StatOffsets =
        OperatingSystem.IsLinux() ? (48, 88)
        : OperatingSystem.IsFreeBSD() ? (112, 64)
        : OperatingSystem.IsMacOS() ? (96, 48)
        : Platform.IsIllumos ? (40, 64)
        : (48, 88);

    /// <summary>Offset of the 64-bit st_size.</summary>
    internal static int SizeOffset => StatOffsets.Size;

    /// <summary>Offset of st_mtim's seconds.</summary>
    internal static int ModifiedOffset => StatOffsets.Modified;

    /// <summary>Kind, size and modification time (seconds since the epoch) in one fstat(2); 0, or -errno.</summary>
    public static int TryGetKindSizeAndModified(int fd, out DescriptorKind kind, out long size, out long modified)
    {
        byte* buffer = stackalloc byte[512];
        kind = DescriptorKind.Other;
        size = modified = 0;
        if (LibC.fstat(fd, buffer) != 0)
            return -Errno.Last;
        int mode = ModeField.Width == 4 ? *(int*)(buffer + ModeField.Offset) : *(ushort*)(buffer + ModeField.Offset);
        kind = KindOf(mode);
        size = *(long*)(buffer + SizeOffset);
        modified = *(long*)(buffer + ModifiedOffset);
        return 0;
    }

    /// <summary>Kind and size in one fstat(2); 0, or -errno.</summary>
    public static int TryGetKindAndSize(int fd, out DescriptorKind kind, out long size) =>
        TryGetKindSizeAndModified(fd, out kind, out size, out _);

    private static DescriptorKind KindOf(int mode) => (mode & S_IFMT) switch
    {
        S_IFREG => DescriptorKind.RegularFile,
        S_IFDIR => DescriptorKind.Directory,
        S_IFIFO => DescriptorKind.Fifo,
        S_IFSOCK => DescriptorKind.Socket,
        S_IFCHR => DescriptorKind.CharacterDevice,
        _ => DescriptorKind.Other,
    };

    /// <summary>Returns the descriptor's kind, or -errno when fstat fails (e.g. EBADF for a closed fd).</summary>
    public static int TryGetKind(int fd, out DescriptorKind kind)
    {
        byte* buffer = stackalloc byte[512]; // larger than struct stat on every supported OS
        kind = DescriptorKind.Other;
        if (LibC.fstat(fd, buffer) != 0)
            return -Errno.Last;
        int mode = ModeField.Width == 4 ? *(int*)(buffer + ModeField.Offset) : *(ushort*)(buffer + ModeField.Offset);
        kind = KindOf(mode);
        return 0;
    }

    /// <summary>The check every backend makes on add: the descriptor must be open and waitable.</summary>
    public static DescriptorKind RequireWaitable(int fd, string operation)
    {
        int rc = TryGetKind(fd, out var kind);
        if (rc < 0)
            throw new PosixException(operation, -rc, $"fd {fd}");
        if (kind == DescriptorKind.RegularFile)
            throw new UnsupportedDescriptorException(fd, "regular file");
        if (kind == DescriptorKind.Directory)
            throw new UnsupportedDescriptorException(fd, "directory");
        return kind;
    }
}
