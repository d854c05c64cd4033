using System.Runtime.InteropServices;
using IoMux.Web;
using IoMux.Interop;

namespace IoMux.Tests.Web;

/// <summary>FreeBSD's sendfile, macOS's sendfile and illumos's sendfilev, modelled on Linux: each keeps its OS's
/// calling convention (hdtr heads, sbytes / len / xferred reporting progress alongside EAGAIN and EINTR, nbytes
/// or len 0 meaning "to the end of the file") and moves the bytes with Linux's send and sendfile. Every third
/// call that makes progress is cut short and reports EINTR with that progress, as those kernels may. They test
/// IoMux's handling of each convention, not the kernels themselves: a model, never a native verification.</summary>
internal static unsafe partial class SendFileModels
{
    private const int MSG_DONTWAIT = 0x40;

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint send(int socket, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "sendfile", SetLastError = true)]
    private static partial nint linux_sendfile(int socket, int file, long* offset, nuint count);

    private static int s_calls;

    /// <summary>Moves head vectors then file bytes; returns the total and errno (EAGAIN/EINTR possibly with progress).</summary>
    private static long Move(int socket, ReadOnlySpan<(nint Base, nuint Length)> memory, int file, long offset, long count, bool toEndOfFile, out int errno)
    {
        errno = 0;
        long moved = 0;
        bool interrupt = Interlocked.Increment(ref s_calls) % 3 == 0;
        foreach (var (address, length) in memory)
        {
            nint n = send(socket, (byte*)address, length, MSG_DONTWAIT);
            if (n < 0)
            {
                errno = Marshal.GetLastPInvokeError();
                return moved;
            }
            moved += n;
            if ((nuint)n < length)
            {
                errno = Interop.Errno.EAGAIN; // a non-blocking BSD socket: partial progress, then EAGAIN
                return moved;
            }
        }
        long remaining = toEndOfFile ? long.MaxValue : count;
        while (remaining > 0)
        {
            long at = offset;
            // An interrupted call still moved a little: at most one page, then EINTR with the progress reported.
            nint n = linux_sendfile(socket, file, &at, (nuint)Math.Min(remaining, interrupt ? 4096 : 0x7ffff000));
            if (n < 0)
            {
                errno = Marshal.GetLastPInvokeError();
                return moved;
            }
            if (n == 0)
                return moved; // end of file: success with what was moved
            moved += n;
            offset += n;
            remaining -= n;
            if (interrupt)
            {
                errno = Interop.Errno.EINTR;
                return moved;
            }
        }
        return moved;
    }

    private static (nint, nuint)[] Heads(SfHdtr* hdtr)
    {
        if (hdtr is null)
            return [];
        var heads = new (nint, nuint)[hdtr->HeaderCount];
        for (int i = 0; i < heads.Length; i++)
            heads[i] = ((nint)hdtr->Headers[i].Base, hdtr->Headers[i].Length);
        return heads;
    }

    /// <summary>FreeBSD: int sendfile(int fd, int s, off_t offset, size_t nbytes, struct sf_hdtr *hdtr, off_t *sbytes, int flags).</summary>
    public static int FreeBsd(int fd, int socket, long offset, nuint count, SfHdtr* hdtr, long* sbytes, int flags)
    {
        long moved = Move(socket, Heads(hdtr), fd, offset, (long)count, toEndOfFile: count == 0, out int errno);
        if (sbytes is not null)
            *sbytes = moved;
        Marshal.SetLastPInvokeError(errno);
        return errno == 0 ? 0 : -1;
    }

    /// <summary>macOS: int sendfile(int fd, int s, off_t offset, off_t *len, struct sf_hdtr *hdtr, int flags).</summary>
    public static int Mac(int fd, int socket, long offset, long* length, SfHdtr* hdtr, int flags)
    {
        long moved = Move(socket, Heads(hdtr), fd, offset, *length, toEndOfFile: *length == 0, out int errno);
        *length = moved;
        Marshal.SetLastPInvokeError(errno);
        return errno == 0 ? 0 : -1;
    }

    /// <summary>illumos: ssize_t sendfilev(int fildes, const struct sendfilevec *vec, int sfvcnt, size_t *xferred).</summary>
    public static nint Illumos(int socket, SendFileVec* vectors, int count, nuint* transferred)
    {
        long moved = 0;
        int errno = 0;
        for (int i = 0; i < count && errno == 0; i++)
        {
            var v = vectors[i];
            long part = v.Fd == SendFileVec.SFV_FD_SELF
                ? Move(socket, [((nint)v.Offset, v.Length)], -1, 0, 0, false, out errno)
                : Move(socket, [], v.Fd, v.Offset, (long)v.Length, false, out errno);
            moved += part;
            if (errno == 0 && v.Fd != SendFileVec.SFV_FD_SELF && part < (long)v.Length)
                break; // end of file
        }
        *transferred = (nuint)moved;
        Marshal.SetLastPInvokeError(errno);
        return errno == 0 ? (nint)moved : -1;
    }
}
