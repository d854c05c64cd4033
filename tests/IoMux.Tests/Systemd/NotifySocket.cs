using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace IoMux.Tests.Systemd;

/// <summary>One datagram a <see cref="NotifySocket"/> received: its text, the sender's pid as the kernel
/// attests it (SCM_CREDENTIALS, what systemd checks for NotifyAccess=main), and when it arrived.</summary>
internal readonly record struct NotifyMessage(string Text, int SenderPid, TimeSpan ArrivedAt);

/// <summary>The manager's side of the notify protocol, as systemd sets it up (src/core/manager.c: an AF_UNIX
/// SOCK_DGRAM socket with SO_PASSCRED): bound at a filesystem path or an abstract name, received with recvmsg so that
/// the sender's credentials come along. <see cref="Address"/> is what NOTIFY_SOCKET must hold.</summary>
internal sealed unsafe partial class NotifySocket : IDisposable
{
    private const int SOL_SOCKET = 1, SO_PASSCRED = 16, SCM_RIGHTS = 1, SCM_CREDENTIALS = 2, MSG_DONTWAIT = 0x40, ControlSize = 128;

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVector
    {
        public byte* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public IoVector* Vectors;
        public nuint VectorCount;
        public byte* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint recvmsg(int fd, MessageHeader* message, int flags);

    private readonly Socket _socket;
    private readonly string? _path;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly byte[] _buffer = new byte[4096];

    private NotifySocket(string address, string? path)
    {
        Address = address;
        _path = path;
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _socket.Bind(new UnixDomainSocketEndPoint(path ?? "\0" + address[1..]));
        _socket.SetRawSocketOption(SOL_SOCKET, SO_PASSCRED, BitConverter.GetBytes(1));
    }

    /// <summary>A socket at a fresh path under the temporary directory.</summary>
    public static NotifySocket AtPath()
    {
        var path = Path.Combine(Path.GetTempPath(), $"iomux-notify-{Environment.ProcessId}-{Guid.NewGuid():N}.sock");
        return new NotifySocket(path, path);
    }

    /// <summary>A socket with a fresh abstract name (<c>@name</c>).</summary>
    public static NotifySocket Abstract() => new($"@iomux-notify-{Environment.ProcessId}-{Guid.NewGuid():N}", null);

    /// <summary>NOTIFY_SOCKET's value.</summary>
    public string Address { get; }

    /// <summary>Time since the socket was made (the clock of <see cref="NotifyMessage.ArrivedAt"/>).</summary>
    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>The next datagram, or null when none comes within <paramref name="timeout"/>.</summary>
    public NotifyMessage? Receive(TimeSpan timeout)
    {
        if (!_socket.Poll(timeout, SelectMode.SelectRead))
            return null;
        var control = stackalloc byte[ControlSize];
        fixed (byte* data = _buffer)
        {
            var vector = new IoVector { Base = data, Length = (nuint)_buffer.Length };
            var header = new MessageHeader { Vectors = &vector, VectorCount = 1, Control = control, ControlLength = ControlSize };
            nint received = recvmsg((int)_socket.Handle, &header, MSG_DONTWAIT);
            if (received < 0)
                throw new InvalidOperationException($"recvmsg failed: errno {Marshal.GetLastPInvokeError()}");
            var arrived = _clock.Elapsed;
            return new NotifyMessage(Encoding.UTF8.GetString(_buffer, 0, (int)received), ReadControl(control, (int)header.ControlLength), arrived);
        }
    }

    /// <summary>The sender's pid from SCM_CREDENTIALS; descriptors that came along (systemd-notify's BARRIER=1 sends
    /// a pipe's write end and waits for its other end to hang up) are closed, as the manager closes them.</summary>
    private static int ReadControl(byte* control, int length)
    {
        int pid = 0;
        int header = sizeof(nuint) + 8; // struct cmsghdr { size_t len; int level; int type; }
        for (int offset = 0; offset + header <= length;)
        {
            int cmsgLength = (int)*(nuint*)(control + offset);
            int level = *(int*)(control + offset + sizeof(nuint)), type = *(int*)(control + offset + sizeof(nuint) + 4);
            byte* data = control + offset + header;
            if (cmsgLength < header)
                break;
            if (level == SOL_SOCKET && type == SCM_CREDENTIALS)
                pid = *(int*)data; // struct ucred { pid; uid; gid; }
            else if (level == SOL_SOCKET && type == SCM_RIGHTS)
                for (int i = 0; i < (cmsgLength - header) / sizeof(int); i++)
                    IoMux.Interop.LibC.close(((int*)data)[i]);
            offset += (cmsgLength + sizeof(nuint) - 1) & ~(sizeof(nuint) - 1);
        }
        return pid;
    }

    /// <summary>Receives until a datagram satisfies <paramref name="match"/> (returning every one received on the
    /// way, that one last); fails the test when none does within <paramref name="timeout"/>.</summary>
    public List<NotifyMessage> ReceiveUntil(Func<NotifyMessage, bool> match, TimeSpan timeout, string what)
    {
        var received = new List<NotifyMessage>();
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < timeout)
        {
            if (Receive(timeout - deadline.Elapsed) is not { } message)
                break;
            received.Add(message);
            if (match(message))
                return received;
        }
        Assert.Fail($"no {what} within {timeout}; received: {string.Join(" | ", received.Select(m => m.Text))}");
        return received;
    }

    /// <summary>Every datagram that arrives during <paramref name="duration"/>.</summary>
    public List<NotifyMessage> ReceiveFor(TimeSpan duration)
    {
        var received = new List<NotifyMessage>();
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < duration && Receive(duration - deadline.Elapsed) is { } message)
            received.Add(message);
        return received;
    }

    public void Dispose()
    {
        _socket.Dispose();
        if (_path is not null)
            File.Delete(_path);
    }
}
