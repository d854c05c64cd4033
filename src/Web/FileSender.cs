using System.Runtime.InteropServices;
using IoMux.Interop;
using Microsoft.Win32.SafeHandles;

namespace IoMux.Web;

/// <summary>How <see cref="FileSender"/> moves file bytes into a socket.</summary>
public enum FileSendMethod
{
    /// <summary>sendfile(2): the kernel copies from the page cache, nothing passes through user space (Linux).</summary>
    SendFile,
    /// <summary>pread(2) into a buffer, then write(2): every OS, and any file system.</summary>
    Copy,
}

/// <summary>What one <see cref="FileSender.SendTo"/> achieved.</summary>
public enum SendStatus
{
    /// <summary>Every byte of the range is in the socket.</summary>
    Completed,
    /// <summary>The socket is full: call again when the poller reports it writable.</summary>
    WouldBlock,
}

/// <summary>The file ended before the range did (it was truncated while being sent).</summary>
public sealed class FileShrankException(long offset)
    : IOException($"The file ended at offset {offset}, before the range being sent.")
{
    /// <summary>Where the file ended.</summary>
    public long Offset { get; } = offset;
}

/// <summary>Sends a byte range of a file to a non-blocking socket, as far as the socket takes it per call: drive it
/// from writable readiness until <see cref="SendStatus.Completed"/>. The sender owns neither descriptor.</summary>
/// <remarks>Linux quirk handled here: since Linux 4.3 a signal can interrupt sendfile after it copied some bytes,
/// and the short count it then returns looks exactly like a full socket. So a short count never means "wait";
/// one more call decides (EAGAIN: wait for writable; anything else: carry on).</remarks>
public sealed unsafe class FileSender : IDisposable
{
    // sendfile(2) moves at most 0x7ffff000 bytes per call on Linux.
    private const long MaxChunk = 0x7ffff000;
    private const int CopyBufferSize = 64 * 1024;

    private readonly SafeFileHandle? _file;
    private readonly ISendFileCalls? _calls;
    private readonly ReadOnlyMemory<byte> _head;
    private int _headSent;
    private int _rawFile = -1;
    private byte* _buffer;
    private int _bufferStart, _bufferPending;
    private long _readOffset;

    /// <summary>Prepares to send <paramref name="count"/> bytes of <paramref name="file"/> from <paramref name="offset"/>.</summary>
    /// <param name="file">An open file (not owned).</param>
    /// <param name="offset">The first byte.</param>
    /// <param name="count">How many bytes.</param>
    /// <param name="method">sendfile where the OS has a supported one (Linux), else copying; <see cref="FileSendMethod.Copy"/> forces the fallback.</param>
    /// <param name="head">Bytes to send before the file (a response head): in the same system call where the OS
    /// allows it (FreeBSD and macOS hdtr, illumos sendfilev), with MSG_MORE on Linux.</param>
    public FileSender(SafeFileHandle file, long offset, long count, FileSendMethod? method = null, ReadOnlyMemory<byte> head = default)
        : this(file, offset, count, method ?? DefaultMethod, head, null)
    {
    }

    /// <summary>With the OS call given (tests: another OS's sendfile convention, modelled on Linux).</summary>
    internal FileSender(SafeFileHandle file, long offset, long count, FileSendMethod method, ReadOnlyMemory<byte> head, ISendFileCalls? calls)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        _file = file;
        _head = head;
        Offset = _readOffset = offset;
        Remaining = count;
        Method = method;
        if (Method == FileSendMethod.SendFile)
            _calls = calls ?? NativeCalls ?? throw new PlatformNotSupportedException("No sendfile for this OS; use FileSendMethod.Copy.");
    }

    /// <summary>This OS's sendfile, or null.</summary>
    private static readonly ISendFileCalls? NativeCalls =
        OperatingSystem.IsLinux() ? new LinuxSendFileCalls()
        : OperatingSystem.IsFreeBSD() ? new FreeBsdSendFileCalls()
        : OperatingSystem.IsMacOS() ? new MacSendFileCalls()
        : Interop.Platform.IsIllumos ? new IllumosSendFileCalls()
        : null;

    /// <summary>For a server's connection: a sender over a raw descriptor the caller owns, reused with
    /// <see cref="Reset"/> from response to response (no allocation per file sent).</summary>
    internal FileSender(FileSendMethod method)
    {
        Method = method;
        if (method == FileSendMethod.SendFile)
            _calls = NativeCalls;
    }

    /// <summary>Points a raw-descriptor sender at a new range.</summary>
    internal void Reset(int file, long offset, long count)
    {
        _rawFile = file;
        Offset = _readOffset = offset;
        Remaining = count;
        BytesSent = 0;
        _headSent = 0;
        _bufferStart = _bufferPending = 0;
    }

    /// <summary>sendfile where the OS has one IoMux drives (Linux, FreeBSD, macOS, illumos/Solaris); copying elsewhere.</summary>
    public static FileSendMethod DefaultMethod => NativeCalls is not null ? FileSendMethod.SendFile : FileSendMethod.Copy;

    /// <summary>The method in use.</summary>
    public FileSendMethod Method { get; }

    /// <summary>The file offset of the next byte to send.</summary>
    public long Offset { get; private set; }

    /// <summary>Bytes of the range not yet in the socket.</summary>
    public long Remaining { get; private set; }

    /// <summary>Bytes in the socket so far.</summary>
    public long BytesSent { get; private set; }

    /// <summary>Sends what the socket takes.</summary>
    /// <exception cref="PosixException">The socket failed (EPIPE, ECONNRESET: the peer went away) or the file could not be read.</exception>
    /// <exception cref="FileShrankException">The file ended early.</exception>
    public SendStatus SendTo(int socket)
    {
        if (_file is null)
            return Method == FileSendMethod.SendFile ? SendWithSendFile(socket, _rawFile) : SendWithCopy(socket, _rawFile);
        bool added = false;
        _file.DangerousAddRef(ref added);
        try
        {
            int file = (int)_file.DangerousGetHandle();
            return Method == FileSendMethod.SendFile ? SendWithSendFile(socket, file) : SendWithCopy(socket, file);
        }
        finally
        {
            if (added)
                _file.DangerousRelease();
        }
    }

    private SendStatus SendWithSendFile(int socket, int file)
    {
        while (_headSent < _head.Length || Remaining > 0)
        {
            var head = _head.Span[_headSent..];
            long moved = _calls!.Send(socket, file, Offset, Math.Min(Remaining, MaxChunk), head, out int errno);
            int headPart = (int)Math.Min(moved, head.Length);
            _headSent += headPart;
            if (moved > headPart)
                Advance((nint)(moved - headPart));
            if (errno == 0)
            {
                if (moved == 0)
                    throw new FileShrankException(Offset); // no error and no progress: the file ended
                continue; // short or not: the next call tells a full socket (EAGAIN) from an interruption
            }
            if (errno == Errno.EAGAIN)
                return SendStatus.WouldBlock;
            if (errno != Errno.EINTR)
                throw new PosixException("sendfile", errno, $"socket {socket}, file offset {Offset}");
        }
        return SendStatus.Completed;
    }

    private SendStatus SendWithCopy(int socket, int file)
    {
        while (_headSent < _head.Length)
        {
            nint written;
            fixed (byte* head = _head.Span)
                written = Write(socket, head + _headSent, _head.Length - _headSent);
            if (written < 0)
                return SendStatus.WouldBlock;
            _headSent += (int)written;
        }
        while (Remaining > 0)
        {
            if (_bufferPending == 0)
            {
                _buffer = _buffer is null ? (byte*)NativeMemory.Alloc(CopyBufferSize) : _buffer;
                nint read = FileCalls.pread(file, _buffer, (nuint)Math.Min(Remaining, CopyBufferSize), _readOffset);
                if (read == 0)
                    throw new FileShrankException(_readOffset);
                if (read < 0)
                {
                    if (Errno.Last == Errno.EINTR)
                        continue;
                    throw Errno.Fail("pread", $"file offset {_readOffset}");
                }
                _bufferStart = 0;
                _bufferPending = (int)read;
                _readOffset += read;
            }
            nint written = Write(socket, _buffer + _bufferStart, _bufferPending);
            if (written < 0)
                return SendStatus.WouldBlock;
            _bufferStart += (int)written;
            _bufferPending -= (int)written;
            Advance(written);
        }
        return SendStatus.Completed;
    }

    /// <summary>write(2) retried on EINTR: the byte count, or -1 for EAGAIN; any other error throws.</summary>
    private static nint Write(int socket, byte* data, int length)
    {
        while (true)
        {
            nint written = LibC.write(socket, data, (nuint)length);
            if (written >= 0)
                return written;
            int errno = Errno.Last;
            if (errno == Errno.EAGAIN)
                return -1;
            if (errno != Errno.EINTR)
                throw new PosixException("write", errno, $"socket {socket}");
        }
    }

    private void Advance(nint bytes)
    {
        Offset += bytes;
        Remaining -= bytes;
        BytesSent += bytes;
    }

    /// <summary>Frees the copy buffer (the descriptors are the caller's).</summary>
    public void Dispose()
    {
        if (_buffer is not null)
        {
            NativeMemory.Free(_buffer);
            _buffer = null;
        }
    }
}
