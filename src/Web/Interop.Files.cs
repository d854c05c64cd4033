using System.Runtime.InteropServices;

namespace IoMux.Web;

/// <summary>The file-transfer calls. Linux's sendfile(2) takes (out, in, off_t*, count); on every 64-bit Linux
/// ABI off_t is 64 bits, so the plain symbol is right (musl 1.2.4 dropped the *64 aliases).</summary>
internal static unsafe partial class FileCalls
{
    [LibraryImport("libc", EntryPoint = "sendfile", SetLastError = true)]
    public static partial nint LinuxSendFile(int socket, int file, long* offset, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint pread(int fd, byte* buffer, nuint count, long offset);
}
