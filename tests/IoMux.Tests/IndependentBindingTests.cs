extern alias core;
using System.Net;
using System.Net.Sockets;
using IoMux.Backends.Poll;
using IoMux.Interop;
using Mono.Unix.Native;
using NativeErrno = Mono.Unix.Native.Errno;
using CoreInterop = core::IoMux.Interop; // the poll backend takes IoMux's PollFd (tests/LinkedInterop.props)

namespace IoMux.Tests;

/// <summary>
/// Mono.Posix (Mono.Posix.NETStandard, the binding the product card names) as a second, independently written libc
/// binding: the errno numbers and poll flags IoMux hard-codes, and the poll backend's own poll(2) binding (struct
/// pollfd, the flag values) against <c>Syscall.poll</c> on the same descriptors in the hangup scenarios (Mono.Posix
/// does not know POLLRDHUP, a Linux extension, so that bit is compared in the conformance suite only).
/// Test code only: no shipped assembly depends on Mono.Posix (it ships no natives for FreeBSD or illumos).
/// </summary>
public sealed unsafe class IndependentBindingTests
{
    [OneTimeSetUp]
    public void LinuxOnly()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("Mono.Posix.NETStandard ships its native helper for Linux and macOS only; these checks run on Linux");
    }

    [TestCase("EPERM", NativeErrno.EPERM)]
    [TestCase("ENOENT", NativeErrno.ENOENT)]
    [TestCase("EINTR", NativeErrno.EINTR)]
    [TestCase("EBADF", NativeErrno.EBADF)]
    [TestCase("EAGAIN", NativeErrno.EAGAIN)]
    [TestCase("ENOMEM", NativeErrno.ENOMEM)]
    [TestCase("EEXIST", NativeErrno.EEXIST)]
    [TestCase("EINVAL", NativeErrno.EINVAL)]
    [TestCase("EMFILE", NativeErrno.EMFILE)]
    [TestCase("ENFILE", NativeErrno.ENFILE)]
    [TestCase("EPIPE", NativeErrno.EPIPE)]
    [TestCase("ENOSYS", NativeErrno.ENOSYS)]
    [TestCase("ENOTSOCK", NativeErrno.ENOTSOCK)]
    [TestCase("ECONNABORTED", NativeErrno.ECONNABORTED)]
    [TestCase("ECONNRESET", NativeErrno.ECONNRESET)]
    [TestCase("ENOBUFS", NativeErrno.ENOBUFS)]
    [TestCase("ENOTCONN", NativeErrno.ENOTCONN)]
    [TestCase("ETIMEDOUT", NativeErrno.ETIMEDOUT)]
    [TestCase("EINPROGRESS", NativeErrno.EINPROGRESS)]
    [TestCase("ETIME", NativeErrno.ETIME)]
    [TestCase("EBADFD", NativeErrno.EBADFD)]
    [TestCase("ENOTDIR", NativeErrno.ENOTDIR)]
    [TestCase("EROFS", NativeErrno.EROFS)]
    [TestCase("ERANGE", NativeErrno.ERANGE)]
    [TestCase("ENAMETOOLONG", NativeErrno.ENAMETOOLONG)]
    [TestCase("ELOOP", NativeErrno.ELOOP)]
    [TestCase("EAFNOSUPPORT", NativeErrno.EAFNOSUPPORT)]
    [TestCase("EADDRINUSE", NativeErrno.EADDRINUSE)]
    [TestCase("EADDRNOTAVAIL", NativeErrno.EADDRNOTAVAIL)]
    public void ErrnoNumbersAndNamesAgree(string name, NativeErrno errno)
    {
        int native = NativeConvert.FromErrno(errno);
        int ours = (int)typeof(CoreInterop.Errno).GetField(name)!.GetValue(null)!; // IoMux's own copy
        Assert.That(ours, Is.EqualTo(native), $"{name}: IoMux says {ours}, Mono.Posix says {native}");
        Assert.That(CoreInterop.Errno.Name(native), Is.EqualTo(name).Or.EqualTo("EWOULDBLOCK"), "the name IoMux prints for it");
    }

    [Test]
    public void PollFlagsAgree()
    {
        Assert.That(PollInterop.POLLIN, Is.EqualTo(NativeConvert.FromPollEvents(PollEvents.POLLIN)));
        Assert.That(PollInterop.POLLPRI, Is.EqualTo(NativeConvert.FromPollEvents(PollEvents.POLLPRI)));
        Assert.That(PollInterop.POLLOUT, Is.EqualTo(NativeConvert.FromPollEvents(PollEvents.POLLOUT)));
        Assert.That(PollInterop.POLLERR, Is.EqualTo(NativeConvert.FromPollEvents(PollEvents.POLLERR)));
        Assert.That(PollInterop.POLLHUP, Is.EqualTo(NativeConvert.FromPollEvents(PollEvents.POLLHUP)));
        Assert.That(PollInterop.POLLNVAL, Is.EqualTo(NativeConvert.FromPollEvents(PollEvents.POLLNVAL)));
    }

    public static IEnumerable<TestCaseData> HangupScenarios()
    {
        yield return new TestCaseData("AF_UNIX peer closed").SetArgDisplayNames("unix-peer-closed");
        yield return new TestCaseData("pipe writer closed").SetArgDisplayNames("pipe-writer-closed");
        yield return new TestCaseData("pipe reader closed").SetArgDisplayNames("pipe-reader-closed");
        yield return new TestCaseData("TCP peer shutdown(SHUT_WR)").SetArgDisplayNames("tcp-peer-shut-wr");
        yield return new TestCaseData("TCP never connected").SetArgDisplayNames("tcp-never-connected");
        yield return new TestCaseData("TCP peer reset").SetArgDisplayNames("tcp-peer-reset");
    }

    /// <summary>The same descriptor, the same requested events, through both bindings: the same revents.</summary>
    [TestCaseSource(nameof(HangupScenarios))]
    public void PollSeesWhatMonoPosixSees(string scenario)
    {
        var owned = new List<IDisposable>();
        var fds = new List<int>();
        try
        {
            int fd = Prepare(scenario, owned, fds);
            // Mono.Posix's PollEvents has no POLLRDHUP (a Linux extension): both bindings ask without it.
            short requested = (short)(PollInterop.POLLIN | PollInterop.POLLOUT | PollInterop.POLLPRI);
            var ours = new CoreInterop.PollFd { Descriptor = fd, Events = requested };
            Assert.That(PollInterop.poll(&ours, 1, 1000), Is.EqualTo(1), "IoMux's binding: one descriptor ready");
            var theirs = new[] { new Pollfd { fd = fd, events = NativeConvert.ToPollEvents(requested) } };
            Assert.That(Syscall.poll(theirs, 1000), Is.EqualTo(1), "Mono.Posix: one descriptor ready");
            short theirRevents = NativeConvert.FromPollEvents(theirs[0].revents);
            Assert.That(ours.ReturnedEvents, Is.EqualTo(theirRevents), $"{scenario}: revents 0x{ours.ReturnedEvents:x} vs 0x{theirRevents:x}");
        }
        finally
        {
            owned.ForEach(o => o.Dispose());
            fds.ForEach(f => LibC.close(f));
        }
    }

    private static int Prepare(string scenario, List<IDisposable> owned, List<int> fds)
    {
        switch (scenario)
        {
            case "AF_UNIX peer closed":
            {
                int* pair = stackalloc int[2];
                Assert.That(LibC.socketpair(1, 1, 0, pair), Is.Zero);
                fds.Add(pair[0]);
                LibC.close(pair[1]);
                return pair[0];
            }
            case "pipe writer closed":
            {
                LibC.CreateNonBlockingPipe(out int r, out int w);
                fds.Add(r);
                LibC.close(w);
                return r;
            }
            case "pipe reader closed":
            {
                LibC.CreateNonBlockingPipe(out int r, out int w);
                fds.Add(w);
                LibC.close(r);
                return w;
            }
            case "TCP never connected":
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                owned.Add(s);
                return (int)s.Handle;
            }
            default:
            {
                using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                listener.Listen(1);
                var local = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                owned.Add(local);
                local.Connect(listener.LocalEndPoint!);
                var peer = listener.Accept();
                owned.Add(peer);
                if (scenario == "TCP peer reset")
                {
                    local.Send(new byte[10]);
                    Thread.Sleep(20);
                    peer.LingerState = new LingerOption(true, 0);
                    peer.Close(); // unread data (and linger 0): RST
                }
                else
                {
                    peer.Shutdown(SocketShutdown.Send);
                }
                Thread.Sleep(20);
                return (int)local.Handle;
            }
        }
    }
}
