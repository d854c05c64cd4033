using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Web;

/// <summary>struct iovec.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct IoVec
{
    public byte* Base;
    public nuint Length;
}

/// <summary>struct sf_hdtr of FreeBSD and macOS (sys/socket.h): iovecs sent before and after the file data in the
/// same call. 32 bytes on 64-bit systems.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct SfHdtr
{
    public IoVec* Headers;
    public int HeaderCount;
    public IoVec* Trailers;
    public int TrailerCount;
}

/// <summary>struct sendfilevec of Solaris and illumos (sys/sendfile.h): one piece of a sendfilev(3EXT) call, file
/// data or (fd SFV_FD_SELF) memory at address sfv_off. 24 bytes on 64-bit systems.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SendFileVec
{
    public const int SFV_FD_SELF = -2;
    public int Fd;
    public uint Flag;
    public long Offset;
    public nuint Length;
}

/// <summary>One OS's file-to-socket call, reduced to one result: the bytes moved (head first, then file data) and
/// the errno (0: none). FreeBSD, macOS and illumos report progress together with EAGAIN or EINTR; Linux reports
/// either progress or an error. Each implementation says how its OS says it.</summary>
internal unsafe interface ISendFileCalls
{
    long Send(int socket, int file, long offset, long count, ReadOnlySpan<byte> head, out int errno);
}

/// <summary>Linux: sendfile(out, in, &amp;offset, count); the head goes first with send(MSG_MORE), so it leaves
/// in the same segment as the file's first bytes.</summary>
internal sealed unsafe class LinuxSendFileCalls : ISendFileCalls
{
    public long Send(int socket, int file, long offset, long count, ReadOnlySpan<byte> head, out int errno)
    {
        errno = 0;
        long moved = 0;
        if (!head.IsEmpty)
        {
            nint n;
            fixed (byte* bytes = head)
                n = Sockets.send(socket, bytes, (nuint)head.Length, Sockets.MSG_MORE);
            if (n < 0)
            {
                errno = Errno.Last;
                return 0;
            }
            if (n < head.Length)
                return n; // the socket is full; the caller's next call finds out (EAGAIN) or goes on
            moved = n;
        }
        if (count == 0)
            return moved;
        nint sent = FileCalls.LinuxSendFile(socket, file, &offset, (nuint)count);
        if (sent < 0)
        {
            errno = moved > 0 ? 0 : Errno.Last; // the head's progress stands; the error repeats on the next call
            return moved;
        }
        return moved + sent;
    }
}

/// <summary>FreeBSD: sendfile(fd, s, offset, nbytes, hdtr, &amp;sbytes, flags). The head rides in hdtr; sbytes counts
/// head and file bytes and is valid also when the call fails with EAGAIN, EBUSY or EINTR. nbytes 0 would mean
/// "to the end of the file", so a zero count never reaches the call.</summary>
internal sealed unsafe partial class FreeBsdSendFileCalls(FreeBsdSendFileCalls.SendFile? call = null) : ISendFileCalls
{
    public delegate int SendFile(int fd, int socket, long offset, nuint count, SfHdtr* hdtr, long* sbytes, int flags);

    private readonly SendFile _call = call ?? Native;

    [LibraryImport("libc", EntryPoint = "sendfile", SetLastError = true)]
    private static partial int Native(int fd, int socket, long offset, nuint count, SfHdtr* hdtr, long* sbytes, int flags);

    public long Send(int socket, int file, long offset, long count, ReadOnlySpan<byte> head, out int errno)
    {
        long sbytes = 0;
        fixed (byte* bytes = head)
        {
            var vector = new IoVec { Base = bytes, Length = (nuint)head.Length };
            var hdtr = new SfHdtr { Headers = &vector, HeaderCount = head.IsEmpty ? 0 : 1 };
            if (count == 0 && head.IsEmpty)
            {
                errno = 0;
                return 0;
            }
            // Only the head to send: a file count of 0 would send the whole file, so the head goes alone.
            int rc = count == 0
                ? SendHeadOnly(socket, head, out sbytes)
                : _call(file, socket, offset, (nuint)count, head.IsEmpty ? null : &hdtr, &sbytes, 0);
            errno = rc == 0 ? 0 : Errno.Last;
            if (errno == EBUSY)
                errno = Errno.EAGAIN; // FreeBSD's "pages are busy": try again when writable, as for EAGAIN
        }
        return sbytes;
    }

    private const int EBUSY = 16;

    private static int SendHeadOnly(int socket, ReadOnlySpan<byte> head, out long sent)
    {
        fixed (byte* bytes = head)
        {
            nint n = LibC.write(socket, bytes, (nuint)head.Length);
            sent = Math.Max(0, n);
            return n < 0 ? -1 : 0;
        }
    }
}

/// <summary>macOS: sendfile(fd, s, offset, &amp;len, hdtr, flags). len goes in as the file byte count and comes back as
/// the bytes sent, head included, also with EAGAIN or EINTR; len 0 would mean "to the end of the file".</summary>
internal sealed unsafe partial class MacSendFileCalls(MacSendFileCalls.SendFile? call = null) : ISendFileCalls
{
    public delegate int SendFile(int fd, int socket, long offset, long* length, SfHdtr* hdtr, int flags);

    private readonly SendFile _call = call ?? Native;

    [LibraryImport("libc", EntryPoint = "sendfile", SetLastError = true)]
    private static partial int Native(int fd, int socket, long offset, long* length, SfHdtr* hdtr, int flags);

    public long Send(int socket, int file, long offset, long count, ReadOnlySpan<byte> head, out int errno)
    {
        errno = 0;
        if (count == 0)
        {
            if (head.IsEmpty)
                return 0;
            fixed (byte* bytes = head)
            {
                nint n = LibC.write(socket, bytes, (nuint)head.Length);
                errno = n < 0 ? Errno.Last : 0;
                return Math.Max(0, n);
            }
        }
        long length = count;
        fixed (byte* bytes = head)
        {
            var vector = new IoVec { Base = bytes, Length = (nuint)head.Length };
            var hdtr = new SfHdtr { Headers = &vector, HeaderCount = head.IsEmpty ? 0 : 1 };
            int rc = _call(file, socket, offset, &length, head.IsEmpty ? null : &hdtr, 0);
            errno = rc == 0 ? 0 : Errno.Last;
        }
        return length;
    }
}

/// <summary>Solaris and illumos: sendfilev(fd, vec, count, &amp;xferred) from libsendfile, with the head as a memory
/// vector (SFV_FD_SELF) and the file as a second: one call for both. xferred is valid with EAGAIN and EINTR.</summary>
internal sealed unsafe partial class IllumosSendFileCalls(IllumosSendFileCalls.SendFileV? call = null) : ISendFileCalls
{
    public delegate nint SendFileV(int socket, SendFileVec* vectors, int count, nuint* transferred);

    private readonly SendFileV _call = call ?? Native;

    [LibraryImport("libsendfile", EntryPoint = "sendfilev", SetLastError = true)]
    private static partial nint Native(int socket, SendFileVec* vectors, int count, nuint* transferred);

    public long Send(int socket, int file, long offset, long count, ReadOnlySpan<byte> head, out int errno)
    {
        SendFileVec* vectors = stackalloc SendFileVec[2];
        int used = 0;
        nuint transferred = 0;
        fixed (byte* bytes = head)
        {
            if (!head.IsEmpty)
                vectors[used++] = new SendFileVec { Fd = SendFileVec.SFV_FD_SELF, Offset = (long)bytes, Length = (nuint)head.Length };
            if (count > 0)
                vectors[used++] = new SendFileVec { Fd = file, Offset = offset, Length = (nuint)count };
            if (used == 0)
            {
                errno = 0;
                return 0;
            }
            nint rc = _call(socket, vectors, used, &transferred);
            errno = rc < 0 ? Errno.Last : 0;
        }
        return (long)transferred;
    }
}
