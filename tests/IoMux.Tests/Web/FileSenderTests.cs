using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using IoMux.Loop;
using IoMux.Web;

namespace IoMux.Tests.Web;

/// <summary>Sending files into TCP sockets on loopback, driven by writable readiness on the event loop: with
/// Linux's sendfile(2), the pread/write fallback, and FreeBSD's, macOS's and illumos's sendfile conventions
/// through models (<see cref="SendFileModels"/>); against a slow reader, a peer that resets, a file shorter than
/// the range, and with a head sent before the file.</summary>
[TestFixture("linux")]
[TestFixture("copy")]
[TestFixture("freebsd-model")]
[TestFixture("macos-model")]
[TestFixture("illumos-model")]
public sealed class FileSenderTests(string kind)
{
    private FileSendMethod Method => kind == "copy" ? FileSendMethod.Copy : FileSendMethod.SendFile;

    private unsafe FileSender CreateSender(Microsoft.Win32.SafeHandles.SafeFileHandle file, long offset, long count, ReadOnlyMemory<byte> head = default) => kind switch
    {
        "linux" => new FileSender(file, offset, count, FileSendMethod.SendFile, head, new LinuxSendFileCalls()),
        "copy" => new FileSender(file, offset, count, FileSendMethod.Copy, head, null),
        "freebsd-model" => new FileSender(file, offset, count, FileSendMethod.SendFile, head, new FreeBsdSendFileCalls(SendFileModels.FreeBsd)),
        "macos-model" => new FileSender(file, offset, count, FileSendMethod.SendFile, head, new MacSendFileCalls(SendFileModels.Mac)),
        _ => new FileSender(file, offset, count, FileSendMethod.SendFile, head, new IllumosSendFileCalls(SendFileModels.Illumos)),
    };

    private string _path = null!;
    private byte[] _content = null!;

    [SetUp]
    public void CreateFile()
    {
        _path = Path.Combine(Path.GetTempPath(), $"iomux-sendfile-{Guid.NewGuid():N}.bin");
        _content = new byte[8 << 20];
        new Random(21).NextBytes(_content);
        File.WriteAllBytes(_path, _content);
    }

    [TearDown]
    public void DeleteFile() => File.Delete(_path);

    [Test, CancelAfter(60_000)]
    public async Task SlowReaderGetsEveryByteWhileTheSenderWaitsForWritable(CancellationToken token)
    {
        var (sender, receiver) = ConnectedPair();
        using (sender)
        using (receiver)
        {
            var reading = Task.Run(() => ReadAll(receiver, pauseEvery: 64 * 1024));
            var (status, waits, sent) = Drive(sender, 0, _content.Length, token);
            Assert.That(status, Is.EqualTo(SendStatus.Completed));
            Assert.That(sent, Is.EqualTo(_content.Length));
            Assert.That(waits, Is.GreaterThan(0), "the slow reader never made the sender wait: the test did not test back-pressure");
            sender.Shutdown(SocketShutdown.Send);
            var received = await reading.WaitAsync(token);
            Assert.That(SHA256.HashData(received), Is.EqualTo(SHA256.HashData(_content)));
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task ARangeSendsExactlyThatSlice(CancellationToken token)
    {
        var (sender, receiver) = ConnectedPair();
        using (sender)
        using (receiver)
        {
            var reading = Task.Run(() => ReadAll(receiver, pauseEvery: 0));
            var (status, _, sent) = Drive(sender, 1000, 100_000, token);
            Assert.That(status, Is.EqualTo(SendStatus.Completed));
            Assert.That(sent, Is.EqualTo(100_000));
            sender.Shutdown(SocketShutdown.Send);
            Assert.That(await reading.WaitAsync(token), Is.EqualTo(_content.AsSpan(1000, 100_000).ToArray()));
        }
    }

    [Test, CancelAfter(60_000)]
    public void APeerThatResetsMidFileIsATypedErrorNamingTheErrno(CancellationToken token)
    {
        var (sender, receiver) = ConnectedPair();
        using (sender)
        {
            var buffer = new byte[1 << 20];
            int got = 0;
            var resetter = Task.Run(() =>
            {
                while (got < buffer.Length)
                    got += receiver.Receive(buffer, got, buffer.Length - got, SocketFlags.None);
                receiver.LingerState = new LingerOption(true, 0);
                receiver.Dispose(); // RST with the file half sent
            });
            var error = Assert.Throws<PosixException>(() => Drive(sender, 0, _content.Length, token));
            Assert.That(error!.ErrorName, Is.AnyOf("ECONNRESET", "EPIPE"));
            Assert.That(error.Operation, Is.EqualTo(Method == FileSendMethod.SendFile ? "sendfile" : "write"));
            resetter.Wait(token);
        }
    }

    [Test, CancelAfter(60_000)]
    public void AFileShorterThanTheRangeEndsWithFileShrank(CancellationToken token)
    {
        var (sender, receiver) = ConnectedPair();
        using (sender)
        using (receiver)
        {
            _ = Task.Run(() => ReadAll(receiver, pauseEvery: 0));
            var error = Assert.Throws<FileShrankException>(() => Drive(sender, _content.Length - 10, 100, token));
            Assert.That(error!.Offset, Is.EqualTo(_content.Length));
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task AHeadGoesOutBeforeTheFileRange(CancellationToken token)
    {
        var head = new byte[300];
        new Random(4).NextBytes(head);
        var (sender, receiver) = ConnectedPair();
        using (sender)
        using (receiver)
        {
            var reading = Task.Run(() => ReadAll(receiver, pauseEvery: 128 * 1024));
            var (status, _, sent) = Drive(sender, 5, 3 << 20, token, head);
            Assert.That(status, Is.EqualTo(SendStatus.Completed));
            Assert.That(sent, Is.EqualTo(3 << 20));
            sender.Shutdown(SocketShutdown.Send);
            var received = await reading.WaitAsync(token);
            Assert.That(received.Length, Is.EqualTo(head.Length + (3 << 20)));
            Assert.That(received.AsSpan(0, head.Length).SequenceEqual(head), Is.True, "the head is not first");
            Assert.That(received.AsSpan(head.Length).SequenceEqual(_content.AsSpan(5, 3 << 20)), Is.True, "the file range differs");
        }
    }

    /// <summary>Runs the sender on an event loop: one writable source, SendTo on each readiness, until the send
    /// completes or fails, or <paramref name="token"/> (the test's deadline) fires.</summary>
    private (SendStatus Status, int Waits, long Sent) Drive(Socket socket, long offset, long count, CancellationToken token, byte[]? head = null)
    {
        using var file = File.OpenHandle(_path);
        using var sender = CreateSender(file, offset, count, head);
        using var loop = new EventLoop(PollerFactory.Create());
        int waits = 0;
        var status = sender.SendTo((int)socket.Handle);
        if (status == SendStatus.WouldBlock)
        {
            Exception? failure = null;
            using var source = loop.AddIo((int)socket.Handle, Interest.Writable, (_, _) =>
            {
                waits++;
                try
                {
                    status = sender.SendTo((int)socket.Handle);
                }
                catch (Exception e)
                {
                    failure = e;
                    loop.Exit(1);
                    return;
                }
                if (status == SendStatus.Completed)
                    loop.Exit(0);
            });
            using (token.Register(() => loop.Exit(2)))
                Assert.That(loop.Run(), Is.Not.EqualTo(2), $"the send stalled at {sender.BytesSent} bytes until the test's deadline");
            if (failure is not null)
                throw failure;
        }
        return (status, waits, sender.BytesSent);
    }

    private static (Socket Sender, Socket Receiver) ConnectedPair()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var receiver = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        receiver.Connect(listener.LocalEndPoint!);
        var sender = listener.Accept();
        sender.Blocking = false;
        // A small send buffer makes back-pressure arrive early, without megabytes queued in the kernel.
        sender.SendBufferSize = 64 * 1024;
        receiver.ReceiveBufferSize = 64 * 1024;
        receiver.ReceiveTimeout = 30_000; // a reader whose sender stalls fails (SocketException) instead of waiting forever
        return (sender, receiver);
    }

    private static byte[] ReadAll(Socket socket, int pauseEvery)
    {
        using var output = new MemoryStream();
        var buffer = new byte[16 * 1024];
        int sincePause = 0;
        while (true)
        {
            int n = socket.Receive(buffer);
            if (n == 0)
                return output.ToArray();
            output.Write(buffer, 0, n);
            sincePause += n;
            if (pauseEvery > 0 && sincePause >= pauseEvery)
            {
                sincePause = 0;
                Thread.Sleep(2);
            }
        }
    }
}
